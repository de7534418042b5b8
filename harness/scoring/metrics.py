"""Full-reference PSNR and SSIM as batched torch code, under an explicit MetricProtocol.

`ssim` reproduces scikit-image's ``structural_similarity`` with its defaults (7x7 uniform
window, sample covariance, K1 = 0.01, K2 = 0.03, mean over colour channels of the 'valid'
region), which PromptIR's utils/val_utils.py calls and HAIR and DaAIR inherit; `ssim_gaussian`
is Wang et al.'s Gaussian form and `ssim_matlab` adds MATLAB's downsampling step. Scores are per
image (a float64 tensor of length B).

Speed (benchmarks/metrics_throughput.py): SSIM needs five local moments; they are computed from
four maps, a = x + y and d = x - y and their squares, each centred by a near-mean constant per
plane so that float32 keeps about 1e-7 of accuracy (variance = E[a^2] - E[a]^2 cancels badly on
uncentred data). On CPU the whole computation is one fused loop (`harness.scoring.ssim_kernel`, numba),
run on chunks of images by a small thread pool; on a GPU it is a few batched torch operations:
the separable window sums run as shifted adds over the flattened maps (a shift by 1 walks along
rows, a shift by W down columns; positions whose window wraps are computed and ignored).
"""
from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from harness.settings.protocols import MetricProtocol
from zoo.registry import Registry

MetricFn = Callable[[Tensor, Tensor, float], Tensor]
METRICS: Registry[MetricFn] = Registry("metric")

K1, K2 = 0.01, 0.03  # SSIM stabilising constants (Wang et al. 2004, Eq. 7; scikit-image defaults)
UNIFORM_WIN = 7  # scikit-image's default win_size
GAUSS_WIN, GAUSS_SIGMA = 11, 1.5  # Wang et al. 2004, Sec. III-C
CHUNK_ELEMENTS = 2**20  # values per CPU chunk (about five 256x256 RGB images): small enough to balance threads


def rgb_to_y(images: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB images in [0, 1] (MATLAB rgb2ycbcr, scaled back to [0, 1])."""
    weights = images.new_tensor([65.481, 128.553, 24.966]).view(1, 3, 1, 1)  # BT.601 for 8-bit, /255
    return ((images * weights).sum(1, keepdim=True) + 16.0) / 255.0


@METRICS.register()
def psnr(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB over all pixels and channels of each image."""
    mse = (restored.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


class _Window:
    """A separable SSIM window: 1-D taps, the scale of their 2-D sum, the covariance correction."""

    def __init__(self, taps: list[float], scale: float, sample_cov: bool):
        self.taps, self.size = taps, len(taps)
        self.scale = scale  # the window sums equal `scale` times the weighted means
        n = self.size**2
        self.cov_norm = n / (n - 1) if sample_cov else 1.0  # scikit-image: NP / (NP - 1)


def _gaussian_taps() -> list[float]:
    g = [math.exp(-((i - GAUSS_WIN // 2) ** 2) / (2 * GAUSS_SIGMA**2)) for i in range(GAUSS_WIN)]
    return [v / sum(g) for v in g]


UNIFORM = _Window([1.0] * UNIFORM_WIN, float(UNIFORM_WIN**2), sample_cov=True)  # sums, not means
GAUSSIAN = _Window(_gaussian_taps(), 1.0, sample_cov=False)

_POOLS: dict[int, ThreadPoolExecutor] = {}


def _window_sum(src: Tensor, dst: Tensor, tmp: Tensor, window: _Window, stride: int) -> None:
    """dst[p] = sum_k taps[k] * src[p + k * stride] over flat buffers (wrapped positions are ignored)."""
    k, n = window.size, src.numel()
    if window is UNIFORM and k == 7:  # 4 adds: pairs, quadruples, then 4 + 2 + 1
        torch.add(src[: n - stride], src[stride:], out=tmp[: n - stride])
        torch.add(tmp[: n - 3 * stride], tmp[2 * stride : n - stride], out=dst[: n - 3 * stride])
        length = n - 6 * stride
        dst[:length].add_(tmp[4 * stride : 4 * stride + length]).add_(src[6 * stride :])
        return
    length = n - (k - 1) * stride
    torch.mul(src[:length], window.taps[0], out=dst[:length])
    for i, w in enumerate(window.taps[1:], start=1):
        dst[:length].add_(src[i * stride : i * stride + length], alpha=w)


def _stabilisers(window: _Window, data_range: float) -> tuple[float, float]:
    """C1 and C2 in the units the algebra uses: window sums (s times means) and s times variances."""
    s = window.scale
    return (K1 * data_range * s) ** 2, (K2 * data_range) ** 2 * s / window.cov_norm


def _planes_ssim_cpu(x: Tensor, y: Tensor, data_range: float, window: _Window,
                     clip: bool = False) -> tuple[Tensor, Tensor]:
    """SSIM and MSE of each plane of P x 1 x H x W CPU planes (float64, length P): the fused kernel.

    `clip` clips the pixels to [0, 1] inside the kernel (a protocol's clipping, without a copy).
    """
    from harness.scoring.ssim_kernel import planes_ssim_mse  # numba's import (0.4 s) only where CPU scoring runs

    p, _, h, w = x.shape
    c1, c2 = _stabilisers(window, data_range)
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    low, high = (0.0, 1.0) if clip else (-np.inf, np.inf)
    consts = np.array([1.0 / window.scale, 2 * c1, 2 * c2, window.scale, 0.0, low, high], dtype)
    ssim_out, mse_out = np.empty(p), np.empty(p)
    planes_ssim_mse(x.detach().reshape(p, h, w).contiguous().numpy(), y.detach().reshape(p, h, w).contiguous().numpy(),
                    np.array(window.taps, dtype), consts, ssim_out, mse_out)
    return torch.from_numpy(ssim_out), torch.from_numpy(mse_out)


def _planes_ssim(x: Tensor, y: Tensor, data_range: float, window: _Window) -> tuple[Tensor, Tensor]:
    """SSIM and MSE of each plane of P x 1 x H x W planes (float64, length P), in x's dtype (torch ops)."""
    p, _, h, w = x.shape
    ho, wo = h - window.size + 1, w - window.size + 1
    s, n = window.scale, p * h * w
    c1, c2 = _stabilisers(window, data_range)
    maps, tmp, box = (torch.zeros(4 * n, dtype=x.dtype, device=x.device) for _ in range(3))
    a, d, aa, dd = maps.view(4, p, 1, h, w).unbind(0)
    # centre a = x + y and d = x - y by near-mean constants (from every 4th pixel): any constant
    # is exact, one near the mean keeps E[a^2] - E[a]^2 accurate in float32 (a hazy image's d
    # has a mean far from zero)
    xs, ys = x[..., ::4, ::4], y[..., ::4, ::4]
    ca, cd = (xs + ys).mean((-1, -2), keepdim=True), (xs - ys).mean((-1, -2), keepdim=True)
    torch.add(x, y, out=a).sub_(ca)
    torch.sub(x, y, out=d).sub_(cd)
    torch.mul(a, a, out=aa)
    torch.mul(d, d, out=dd)
    # MSE = E[(d_c + cd)^2] = E[d_c^2] + 2 cd E[d_c] + cd^2
    # row sums in the compute dtype (1e-7 relative), then float64: a float64 sum would first copy
    # the whole map to float64, which costs as much as a fifth of the SSIM itself
    mean_dc = d.sum(-1).sum((1, 2), dtype=torch.float64) / (h * w)
    cd64 = cd.double().view(p)
    mse = dd.sum(-1).sum((1, 2), dtype=torch.float64) / (h * w) + 2 * cd64 * mean_dc + cd64**2
    _window_sum(maps, box, tmp, window, 1)  # along rows
    _window_sum(box, maps, tmp, window, w)  # down columns
    sa, sd, saa, sdd = maps.view(4, p, 1, h, w).unbind(0)  # window sums: s times the local means
    cs_num = tmp[:n].view(p, 1, h, w)
    saa.addcmul_(sa, sa, value=-1 / s).add_(2 * c2)  # s var(a) + 2 C2' = s (vx + vy + 2 cxy) + 2 C2'
    sdd.addcmul_(sd, sd, value=-1 / s)  # s var(d) = s (vx + vy - 2 cxy)
    torch.sub(saa, sdd, out=cs_num)  # 2 (2 s cxy + C2')
    saa.add_(sdd)  # 2 (s (vx + vy) + C2')
    sa.add_(ca, alpha=s).square_().add_(2 * c1)  # s^2 (ux + uy)^2 + 2 C1'
    sd.add_(cd, alpha=s).square_()  # s^2 (ux - uy)^2
    torch.sub(sa, sd, out=sdd)  # 2 (2 s^2 ux uy + C1')
    sa.add_(sd)  # 2 (s^2 (ux^2 + uy^2) + C1')
    sdd.mul_(cs_num).div_(sa.mul_(saa))  # the SSIM map
    rows = sdd[..., :ho, :wo].sum(-1)  # one row in the compute dtype (1e-7 relative), then float64
    return rows.sum((1, 2), dtype=torch.float64) / (ho * wo), mse


@dataclass(frozen=True)
class _SsimForm:
    """An SSIM variant: its window and an optional resampling applied first (MATLAB's)."""

    window: _Window
    resample: Callable[[Tensor], Tensor] | None = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A persistent pool whose threads run torch ops single-threaded (no per-op barriers)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="metrics",
                                             initializer=torch.set_num_threads, initargs=(1,))
    return _POOLS[workers]


def _scored(restored: Tensor, target: Tensor, protocol: MetricProtocol | None, form: _SsimForm,
            data_range: float) -> tuple[Tensor, Tensor]:
    """Per-image (SSIM, MSE) of B x C x H x W batches; images are prepared chunk by chunk.

    On CPU, chunks of about CHUNK_ELEMENTS values run one per thread of a small pool (each thread
    single-threaded; the fused kernel releases the GIL). MSE is that of the prepared images (NaN
    when `form` resamples: use `psnr` on them instead).
    """
    if restored.shape != target.shape:
        raise ValueError(f"restored {tuple(restored.shape)} and target {tuple(target.shape)} differ in shape")
    b = restored.shape[0]
    cpu = restored.device.type == "cpu"
    per_chunk = max(1, CHUNK_ELEMENTS // restored[0].numel()) if cpu else b
    ssim_out = torch.empty(b, dtype=torch.float64)
    mse_out = torch.full((b,), float("nan"), dtype=torch.float64)
    # clipping commutes with the border crop, so on CPU an RGB protocol's clipping runs inside the
    # kernel (no clipped copies of the batch); quantising or a colour transform must come after it
    fuse_clip = (cpu and protocol is not None and protocol.clip and not protocol.quantize
                 and protocol.color == "rgb" and form.resample is None)
    preparation = dataclasses.replace(protocol, clip=False) if fuse_clip else protocol

    def run(start: int) -> None:
        x, y = restored[start : start + per_chunk], target[start : start + per_chunk]
        if preparation is not None:
            x, y = prepare(x, preparation), prepare(y, preparation)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # float32: ~1e-7 from float64
        x, y = x.to(dtype), y.to(dtype)
        if form.resample is not None:
            x, y = form.resample(x), form.resample(y)
        n, c, h, w = x.shape
        if h < form.window.size or w < form.window.size:
            raise ValueError(f"SSIM needs images of at least {form.window.size}x{form.window.size} pixels "
                             f"(after protocol and resampling), got {h}x{w}")
        planes_x, planes_y = x.reshape(n * c, 1, h, w), y.reshape(n * c, 1, h, w)
        if cpu:
            ssim_planes, mse_planes = _planes_ssim_cpu(planes_x, planes_y, data_range, form.window, fuse_clip)
        else:
            ssim_planes, mse_planes = _planes_ssim(planes_x, planes_y, data_range, form.window)
        ssim_out[start : start + n] = ssim_planes.view(n, c).mean(1).cpu()  # channel mean, as scikit-image
        if form.resample is None:
            mse_out[start : start + n] = mse_planes.view(n, c).mean(1).cpu()

    starts = list(range(0, b, per_chunk))
    workers = min(torch.get_num_threads(), len(starts)) if cpu else 1
    if workers > 1:
        list(_pool(workers).map(run, starts))
    else:
        for start in starts:
            run(start)
    return ssim_out.to(restored.device), mse_out.to(restored.device)


SSIM_FORMS: Registry[_SsimForm] = Registry("SSIM variant")
SSIM_FORMS.add("ssim", _SsimForm(UNIFORM))
SSIM_FORMS.add("ssim_gaussian", _SsimForm(GAUSSIAN))


@METRICS.register()
def ssim(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM with scikit-image's defaults: 7x7 uniform window, sample covariance, valid region only.

    scikit-image filters with reflection and then crops (win_size - 1) / 2 pixels from each side,
    which leaves exactly the windows that lie inside the image.
    """
    return _scored(restored, target, None, SSIM_FORMS.get("ssim"), data_range)[0]


@METRICS.register()
def ssim_gaussian(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of Wang et al.: Gaussian 11x11 window, sigma 1.5, population covariance, valid region.

    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` (its truncate=3.5 gives the same 11 taps).
    """
    return _scored(restored, target, None, SSIM_FORMS.get("ssim_gaussian"), data_range)[0]


def matlab_downsample(images: Tensor) -> Tensor:
    """MATLAB ssim.m's first step: average f x f blocks, f = max(1, round(min(H, W) / 256)).

    As pyiqa's downsample=True: non-overlapping f x f means; an odd last row or column is dropped
    (MATLAB's 'symmetric' imfilter would average it with its mirror).
    """
    f = max(1, round(min(images.shape[-2:]) / 256))  # 256: ssim.m's reference viewing size
    return F.avg_pool2d(images, kernel_size=f) if f > 1 else images


SSIM_FORMS.add("ssim_matlab", _SsimForm(GAUSSIAN, matlab_downsample))


@METRICS.register()
def ssim_matlab(restored: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM as MATLAB's ssim.m: downsample by round(min(H, W) / 256), then Gaussian 11x11 SSIM."""
    return _scored(restored, target, None, SSIM_FORMS.get("ssim_matlab"), data_range)[0]


def prepare(images: Tensor, protocol: MetricProtocol) -> Tensor:
    """Apply a protocol's clipping, quantisation, colour space and border crop."""
    if protocol.clip:
        images = images.clamp(0.0, 1.0)
    if protocol.quantize:
        images = torch.round(images * 255.0) / 255.0
    if protocol.color == "y":
        images = rgb_to_y(images) if images.shape[1] == 3 else images
        if protocol.round_y:
            images = torch.round(images * 255.0) / 255.0
    elif protocol.color != "rgb":
        raise ValueError(f"metric protocol colour '{protocol.color}' is not one of: rgb, y")
    b = protocol.border
    return images[..., b : images.shape[-2] - b, b : images.shape[-1] - b] if b else images


def score(restored: Tensor, target: Tensor, protocol: MetricProtocol) -> dict[str, Tensor]:
    """PSNR and SSIM per image under `protocol` (targets are prepared the same way)."""
    ssim_value, mse = _scored(restored, target, protocol, SSIM_FORMS.get(protocol.ssim), protocol.data_range)
    if torch.isnan(mse).any():  # a resampling SSIM form: PSNR on the full prepared images
        return {"psnr": METRICS.get(protocol.psnr)(prepare(restored, protocol), prepare(target, protocol),
                                                   protocol.data_range), "ssim": ssim_value}
    return {"psnr": 10.0 * torch.log10(protocol.data_range**2 / mse), "ssim": ssim_value}
