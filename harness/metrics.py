"""Full-reference metrics as batched torch code, following the all-in-one papers' protocol.

PSNR and SSIM reproduce scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity``
with its defaults (7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, mean over colour
channels), which PromptIR's utils/val_utils.py calls and HAIR and DaAIR inherit. Scores are per
image (tensor of length B); computed in float64 so they agree with the reference to 1e-6.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.settings import MetricProtocol
from zoo.registry import Registry

MetricFn = Callable[[Tensor, Tensor, float], Tensor]
METRICS: Registry[MetricFn] = Registry("metric")


def rgb_to_y(images: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB images in [0, 1] (MATLAB rgb2ycbcr, scaled back to [0, 1])."""
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)
    return ((images * weights).sum(1, keepdim=True) + 16.0) / 255.0


@METRICS.register()
def psnr(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB over all pixels and channels of each image."""
    mse = (restored.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _ssim_map(x: Tensor, y: Tensor, data_range: float, window: Callable[[Tensor], Tensor], n: int, sample_cov: bool) -> Tensor:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ux, uy = window(x), window(y)
    uxx, uyy, uxy = window(x * x), window(y * y), window(x * y)
    norm = n / (n - 1) if sample_cov else 1.0
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


@METRICS.register()
def ssim(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM with scikit-image's defaults: 7x7 uniform window, sample covariance, valid region only.

    scikit-image filters with reflection and then crops (win_size - 1) / 2 pixels from each side,
    which leaves exactly the windows that lie inside the image: a 'valid' average pooling.
    """
    window = lambda t: F.avg_pool2d(t, 7, stride=1)  # noqa: E731
    s = _ssim_map(restored.double(), target.double(), data_range, window, 49, sample_cov=True)
    return s.flatten(1).mean(1)


@METRICS.register()
def ssim_gaussian(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of Wang et al.: Gaussian 11x11 window, sigma 1.5, population covariance.

    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` (MoCE-IR's choice), valid region only.
    """
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(coords**2) / (2 * 1.5**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).to(restored.device)
    channels = restored.shape[1]
    weight = kernel.expand(channels, 1, 11, 11).contiguous()
    window = lambda t: F.conv2d(t, weight, groups=channels)  # noqa: E731
    s = _ssim_map(restored.double(), target.double(), data_range, window, 121, sample_cov=False)
    return s.flatten(1).mean(1)


def prepare(images: Tensor, protocol: MetricProtocol) -> Tensor:
    """Apply a protocol's clipping, quantisation, colour space and border crop."""
    if protocol.clip:
        images = images.clamp(0.0, 1.0)
    if protocol.quantize:
        images = torch.round(images * 255.0) / 255.0
    if protocol.color == "y":
        images = rgb_to_y(images)
    elif protocol.color != "rgb":
        raise ValueError(f"metric protocol colour '{protocol.color}' is not one of: rgb, y")
    b = protocol.border
    return images[..., b : images.shape[-2] - b, b : images.shape[-1] - b] if b else images


def score(restored: Tensor, target: Tensor, protocol: MetricProtocol) -> dict[str, Tensor]:
    """PSNR and SSIM per image under `protocol` (targets are prepared the same way)."""
    x, y = prepare(restored, protocol), prepare(target, protocol)
    return {
        "psnr": METRICS.get(protocol.psnr)(x, y, protocol.data_range),
        "ssim": METRICS.get(protocol.ssim)(x, y, protocol.data_range),
    }
