"""Read a released checkpoint, whatever its container, without running code from the file.

Authors publish weights as BasicSR files (``{'params': ...}`` / ``params_ema``), PyTorch
Lightning checkpoints (``state_dict`` with ``net.``-prefixed keys: PromptIR, HAIR), plain
state_dicts (AirNet's All.pth, HyperRes' noise_detect.pth), ``{'state_dict': ...}`` (HyperRes)
and safetensors. Pickles go through ``torch.load(weights_only=True)``; a Lightning file whose
extra entries hold objects that refuses (an argparse Namespace in ``hyper_parameters``) is read
again through a restricted unpickler that keeps tensors and plain containers and builds nothing
else, so no code from the file ever runs.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# BasicSR files may hold params_ema next to params; the authors' test scripts read 'params'
# (BasicSR's load_network default param_key; Restormer's test_*.py), so it is tried first.
STATE_KEYS = ("params", "params_ema", "state_dict", "model", "net")
LIGHTNING_PREFIXES = ("net.", "model.", "module.")


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read safely; the message names the file."""


class _Opaque:
    """Stands in for an object the restricted unpickler refuses to build (it keeps no state)."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The flat ``{key: tensor}`` state_dict inside `path`, containers unwrapped, prefixes stripped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        payload: Any = _read_safetensors(path)
    else:
        payload = _read_pickle(path)
    return _unwrap(payload, path)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointReadError(f"weights file {path} is not a readable safetensors file: {error}") from None


def _read_pickle(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = str(error)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointReadError(
            f"weights file {path} is truncated or not a PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    # weights_only refused a global. Only plain-data containers are worth a second, restricted
    # reading (Lightning's hyper_parameters); a file that asks for a callable is refused outright.
    payload = _read_restricted(path, refused)
    return payload


def _read_restricted(path: Path, refused: str) -> Any:
    """Read a zip checkpoint whose only unsafe globals are plain classes, keeping their tensors."""

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            allowed = _SAFE_GLOBALS.get((module, name))
            if allowed is not None:
                return allowed
            if module.startswith("torch") and name in _TORCH_REBUILDERS:
                return _TORCH_REBUILDERS[name]
            if _is_plain_class(module, name):
                return _Opaque
            raise CheckpointReadError(
                f"weights file {path} asks to run {module}.{name} when read: refused, it is not a weights "
                "file that can be read safely (only tensors and plain containers are accepted)")

        def persistent_load(self, pid: Any) -> Any:
            return loader.persistent_load(pid)

    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointReadError(
            f"weights file {path} is a legacy (non-zip) pickle that torch.load(weights_only=True) refused: "
            f"{refused.splitlines()[0]}") from None
    loader = _ZipTensorLoader(archive)
    with archive:
        data_name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if data_name is None:
            raise CheckpointReadError(f"weights file {path} has no data.pkl: not a PyTorch checkpoint")
        loader.prefix = data_name[: -len("data.pkl")]
        with archive.open(data_name) as stream:
            return RestrictedUnpickler(stream).load()


def _is_plain_class(module: str, name: str) -> bool:
    """Classes whose instances only hold data (an argparse Namespace, a dataclass of options)."""
    return (module, name) in {("argparse", "Namespace"), ("collections", "OrderedDict"),
                              ("omegaconf.dictconfig", "DictConfig"), ("omegaconf.listconfig", "ListConfig"),
                              ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
                              ("pytorch_lightning.utilities.parsing", "AttributeDict"),
                              ("lightning.fabric.utilities.data", "AttributeDict")}


class _ZipTensorLoader:
    """Rebuilds tensor storages of a zip checkpoint (torch's own format) without torch.load."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive
        self.prefix = ""

    def persistent_load(self, pid: Any) -> Any:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise CheckpointReadError(f"unexpected persistent id {kind!r} in checkpoint")
        dtype = storage_type.dtype if hasattr(storage_type, "dtype") else storage_type
        raw = self.archive.read(f"{self.prefix}data/{key}")
        storage = torch.UntypedStorage.from_buffer(raw, byte_order="little", dtype=torch.uint8)
        return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)


def _storage_type(name: str) -> Any:
    class StorageType:
        dtype = getattr(torch, name)

    return StorageType


_TORCH_REBUILDERS: dict[str, Any] = {
    "_rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "_rebuild_parameter": torch._utils._rebuild_parameter,
    **{f"{kind}Storage": _storage_type(dtype) for kind, dtype in [
        ("Float", "float32"), ("Double", "float64"), ("Half", "float16"), ("BFloat16", "bfloat16"),
        ("Long", "int64"), ("Int", "int32"), ("Short", "int16"), ("Char", "int8"), ("Byte", "uint8"),
        ("Bool", "bool")]},
}
_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): dict,
    ("torch", "Size"): torch.Size,
}


def _unwrap(payload: Any, path: Path) -> dict[str, Tensor]:
    """Find the state_dict inside a container and strip Lightning/DataParallel prefixes."""
    state = payload
    while isinstance(state, dict) and not _is_state(state):
        inner = next((state[k] for k in STATE_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            found = sorted(str(k) for k in state)[:8]
            raise CheckpointReadError(
                f"weights file {path} holds no state_dict: expected tensors, or one of the containers "
                f"{list(STATE_KEYS)}; found keys {found}")
        state = inner
    if not isinstance(state, dict) or not state:
        raise CheckpointReadError(f"weights file {path} holds {type(payload).__name__}, not a state_dict")
    for prefix in LIGHTNING_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return {k: v for k, v in state.items()}


def _is_state(mapping: dict) -> bool:
    return bool(mapping) and all(isinstance(v, Tensor) for v in mapping.values())
