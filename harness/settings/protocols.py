"""Metric protocols: named, versioned recipes for turning two images into PSNR and SSIM numbers.

Papers disagree on how PSNR/SSIM are computed (colour space, border, SSIM window, rounding), and
the disagreement is larger than the gaps between methods (../shared/ARCHITECTURES.md, "Evaluation
protocol"). A protocol fixes every choice; each run logs its protocol's name, version and fields.
A change to what a named protocol computes bumps its version.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zoo.registry import Registry

COLOR_SPACES = ("rgb", "y")  # "y": ITU-R BT.601 luma (MATLAB rgb2ycbcr), as super-resolution papers use
SSIM_VARIANTS = ("ssim", "ssim_gaussian", "ssim_matlab")  # names in harness.scoring.metrics.METRICS


@dataclass(frozen=True)
class MetricProtocol:
    """How restored images are scored (recorded with every number as `protocol.*` params)."""

    name: str = "custom"
    version: int = 1
    color: str = "rgb"  # one of COLOR_SPACES
    data_range: float = 1.0  # peak value of the images' scale ([0, 1] images: 1)
    clip: bool = True  # outputs clipped to [0, 1] ...
    quantize: bool = False  # ... and rounded to 8-bit levels (as a saved PNG) or not (PromptIR: not)
    round_y: bool = False  # luma rounded to 8-bit levels after conversion (MATLAB rgb2ycbcr on uint8)
    border: int = 0  # pixels cropped from every side before scoring
    ssim: str = "ssim"  # SSIM variant, one of SSIM_VARIANTS
    psnr: str = "psnr"

    def __post_init__(self) -> None:
        if self.color not in COLOR_SPACES:
            raise ValueError(f"metric protocol colour '{self.color}' is not one of: {', '.join(COLOR_SPACES)}")
        if self.ssim not in SSIM_VARIANTS:
            raise ValueError(f"metric protocol SSIM variant '{self.ssim}' is not one of: {', '.join(SSIM_VARIANTS)}")
        if self.psnr != "psnr":
            raise ValueError(f"metric protocol PSNR '{self.psnr}' is not one of: psnr")
        if self.border < 0 or self.data_range <= 0:
            raise ValueError(f"metric protocol needs border >= 0 and data_range > 0, got {self.border}, {self.data_range}")
        if self.round_y and self.color != "y":
            raise ValueError("metric protocol: round_y needs color 'y'")

    def params(self) -> dict[str, Any]:
        """Flat `protocol.<field>` parameters for tracking."""
        return {f"protocol.{k}": v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class ProtocolEntry:
    """A registered protocol with what it is for and where it comes from."""

    protocol: MetricProtocol
    description: str
    source: str


PROTOCOLS: Registry[ProtocolEntry] = Registry("protocol")


def _register(description: str, source: str, **fields: Any) -> None:
    protocol = MetricProtocol(**fields)
    PROTOCOLS.add(protocol.name, ProtocolEntry(protocol, description, source))


_register(
    "full RGB, outputs clipped to [0, 1] as floats, scikit-image SSIM defaults (7x7 uniform window, "
    "sample covariance): the all-in-one papers' evaluation",
    "PromptIR utils/val_utils.py (HAIR, DaAIR, MoCE-IR inherit it)",
    name="promptir", version=1, color="rgb", ssim="ssim",
)
_register(
    "as promptir, on the ITU-R BT.601 luma channel",
    "HyperRes Sec. 4.2 (SR: 'PSNR based on the y-channel'); BT.601 as MATLAB rgb2ycbcr",
    name="promptir_y", version=1, color="y", ssim="ssim",
)
_register(
    "full RGB, SSIM of Wang et al.: Gaussian 11x11 window, sigma 1.5, population covariance",
    "Wang et al. 2004 (IEEE TIP 13(4)); scikit-image gaussian_weights=True, use_sample_covariance=False",
    name="wang", version=1, color="rgb", ssim="ssim_gaussian",
)
_register(
    "BT.601 luma, SSIM of Wang et al. (Gaussian 11x11, sigma 1.5, population covariance)",
    "Wang et al. 2004; BasicSR-style Y-channel evaluation without rounding",
    name="wang_y", version=1, color="y", ssim="ssim_gaussian",
)
_register(
    "MATLAB ssim.m convention: 8-bit RGB, BT.601 luma rounded to 8 bits, Gaussian SSIM after "
    "averaging-downsampling by max(1, round(min(H, W) / 256))",
    "Wang's ssim.m (downsampling step); pyiqa SSIM(test_y_channel, color_space='ycbcr', downsample=True)",
    name="matlab", version=1, color="y", quantize=True, round_y=True, ssim="ssim_matlab",
)


def get_protocol(name: str) -> MetricProtocol:
    """The registered protocol `name` (UnknownNameError lists the valid ones)."""
    return PROTOCOLS.get(name).protocol


def resolve_protocol(spec: str | dict[str, Any] | None) -> MetricProtocol:
    """A protocol from a setting file: a registered name, or a mapping of fields (`name` optional).

    A mapping that names a registered protocol starts from it and overrides the given fields;
    the result keeps the name only when nothing changed, else it is called '<name>+custom'.
    """
    if spec is None:
        return get_protocol("promptir")
    if isinstance(spec, str):
        return get_protocol(spec)
    fields = dict(spec)
    name = fields.pop("name", None)
    if name is None:
        return MetricProtocol(**fields)
    base = get_protocol(name)
    changed = {k: v for k, v in fields.items() if getattr(base, k, object()) != v}
    if not changed:
        return base
    return dataclasses.replace(base, name=f"{base.name}+custom", **changed)
