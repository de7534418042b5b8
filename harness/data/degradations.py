"""Synthetic degradation models, registered by name; all work on float RGB images in [0, 1].

Every function takes the clean image (H x W x 3, float32 on the 8-bit grid) and a numpy
Generator, and returns the degraded image quantised to 8 bits, as it would be stored on disk.
Random parameters are drawn from the generator, so a fixed seed gives a fixed image.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from zoo.registry import Registry


def convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D linear convolution of `image` with `kernel`, cropped to the image's shape (centred).

    The arithmetic of scipy.signal.fftconvolve(mode="same") step by step (real FFTs of scipy's
    fast length, product, inverse, centred crop), so the synthesised images and the suite's
    fingerprints stay bit for bit the same (tests/test_settings_and_data.py; for kernels of 2 or
    more pixels a side, as the rain kernels are: scipy skips the FFT along a side of 1), without
    importing scipy.signal: that import costs about 1 s in every process that synthesises data.
    """
    full = [a + b - 1 for a, b in zip(image.shape, kernel.shape)]
    fast = [sp_fft.next_fast_len(n, True) for n in full]
    spectrum = sp_fft.rfftn(image, fast, axes=(0, 1)) * sp_fft.rfftn(kernel, fast, axes=(0, 1))
    out = sp_fft.irfftn(spectrum, fast, axes=(0, 1))
    top, left = [(f - s) // 2 for f, s in zip(full, image.shape)]
    return out[top:top + image.shape[0], left:left + image.shape[1]].copy()


DegradationFn = Callable[..., np.ndarray]
DEGRADATIONS: Registry[DegradationFn] = Registry("degradation")


def to_8bit_grid(image: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and round to the nearest 8-bit level."""
    return (np.clip(np.round(image * 255.0), 0, 255) / 255.0).astype(np.float32)


@DEGRADATIONS.register()
def gaussian_noise(clean: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Additive white Gaussian noise of std `sigma` on the 0-255 scale, clipped then truncated.

    Truncation (not rounding) to uint8 follows PromptIR's utils/degradation_utils.py, which the
    all-in-one papers' published numbers use.
    """
    pixels = np.round(clean * 255.0)
    noisy = np.clip(pixels + rng.standard_normal(clean.shape) * sigma, 0, 255)
    return (np.floor(noisy) / 255.0).astype(np.float32)


def _line_kernel(length: float, angle_deg: float, width: float = 0.0) -> np.ndarray:
    """A normalised anti-aliased line segment of `length` pixels at `angle_deg`."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float64)
    centre = size // 2
    theta = np.deg2rad(angle_deg)
    for t in np.linspace(-length / 2, length / 2, int(length * 4) + 1):
        y, x = centre + t * np.sin(theta), centre + t * np.cos(theta)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                if 0 <= yy < size and 0 <= xx < size:
                    kernel[yy, xx] += wy * wx
    if width > 0:
        kernel = ndimage.gaussian_filter(kernel, width)
    return kernel / kernel.sum()


@DEGRADATIONS.register()
def rain(
    clean: np.ndarray,
    rng: np.random.Generator,
    density: tuple[float, float] = (0.002, 0.006),
    length: tuple[float, float] = (12.0, 30.0),
    strength: tuple[float, float] = (0.5, 0.9),
) -> np.ndarray:
    """Light additive rain streaks (Rain100L-like): sparse drops smeared along one direction."""
    h, w = clean.shape[:2]
    drops = (rng.random((h, w)) < rng.uniform(*density)) * rng.uniform(0.6, 1.0, (h, w))
    streak_len = rng.uniform(*length)
    # Streaks fall within 25 degrees of vertical (a single wind direction per image).
    kernel = _line_kernel(streak_len, 90.0 + rng.uniform(-25, 25), width=0.5)
    streaks = convolve_same(drops, kernel * streak_len)
    streaks = np.clip(streaks * rng.uniform(*strength), 0, 1)[..., None]
    return to_8bit_grid(clean + streaks * (1.0 - clean) * 0.9 + streaks * 0.1)


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """A smooth random field in [0, 1] with correlation length about `scale` pixels."""
    field = ndimage.gaussian_filter(rng.standard_normal((h, w)), scale, mode="reflect")
    return (field - field.min()) / (np.ptp(field) + 1e-12)


@DEGRADATIONS.register()
def haze(
    clean: np.ndarray,
    rng: np.random.Generator,
    beta: tuple[float, float] = (0.8, 1.6),
    airlight: tuple[float, float] = (0.7, 1.0),
) -> np.ndarray:
    """Atmospheric scattering I = J*t + A*(1 - t), t = exp(-beta*d), with a smooth synthetic depth d.

    The depth grows towards the top of the frame (a ground plane) plus a smooth random field, as
    in RESIDE's outdoor sets where depth comes from an estimator.
    """
    h, w = clean.shape[:2]
    ramp = np.linspace(1.0, 0.2, h)[:, None] * np.ones((1, w))
    depth = 0.6 * ramp + 0.4 * _smooth_field(rng, h, w, scale=max(h, w) / 6)
    transmission = np.exp(-rng.uniform(*beta) * depth)[..., None]
    atmospheric = rng.uniform(*airlight)
    return to_8bit_grid(clean * transmission + atmospheric * (1.0 - transmission))


@DEGRADATIONS.register()
def motion_blur(
    clean: np.ndarray,
    rng: np.random.Generator,
    length: tuple[float, float] = (7.0, 17.0),
) -> np.ndarray:
    """Linear camera-motion blur: a line kernel of random length and direction."""
    kernel = _line_kernel(rng.uniform(*length), rng.uniform(0, 180), width=0.3)
    blurred = np.stack(
        [ndimage.convolve(clean[..., c].astype(np.float64), kernel, mode="reflect") for c in range(3)], -1
    )
    return to_8bit_grid(blurred)


@DEGRADATIONS.register()
def low_light(
    clean: np.ndarray,
    rng: np.random.Generator,
    gamma: tuple[float, float] = (1.4, 2.0),
    scale: tuple[float, float] = (0.15, 0.35),
    noise_sigma: tuple[float, float] = (2.0, 6.0),
) -> np.ndarray:
    """Under-exposure: scale * x**gamma plus sensor noise (std on the 0-255 scale), LOL-like."""
    dark = rng.uniform(*scale) * np.power(clean, rng.uniform(*gamma))
    noisy = dark + rng.standard_normal(clean.shape) * rng.uniform(*noise_sigma) / 255.0
    return to_8bit_grid(noisy)


@DEGRADATIONS.register()
def jpeg(clean: np.ndarray, rng: np.random.Generator, quality: float) -> np.ndarray:
    """JPEG compression at `quality` (1-100) with the IJG/libjpeg encoder through Pillow.

    HyperRes (Sec. 4.1) uses OpenCV's encoder; both wrap libjpeg with the standard quality
    scaling of the quantisation tables, so the artefacts match up to chroma handling: greyscale
    inputs (the DeJPEG protocol) are encoded as single-channel JPEGs, colour ones with 4:2:0.
    """
    from PIL import Image

    pixels = np.round(np.clip(clean, 0, 1) * 255).astype(np.uint8)
    grey = bool(np.all(pixels == pixels[..., :1]))
    image = Image.fromarray(pixels[..., 0] if grey else pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(round(quality)))
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())), dtype=np.float32) / 255.0
    return np.repeat(decoded[..., None], 3, axis=2) if grey else decoded


@DEGRADATIONS.register()
def bicubic_downup(clean: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Down-scale by `scale` and up-scale back to the original size, both bicubic (pre-upsampling SR).

    HyperRes Sec. 4.1 uses OpenCV's bicubic resize both ways; torch's bicubic interpolation
    (a = -0.75, half-pixel centres, no anti-aliasing) follows the same convention.
    """
    import torch
    import torch.nn.functional as F

    height, width = clean.shape[:2]
    small = (max(1, int(height / scale)), max(1, int(width / scale)))
    x = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))[None].double()
    low = F.interpolate(x, size=small, mode="bicubic", align_corners=False)
    up = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    return to_8bit_grid(up[0].numpy().transpose(1, 2, 0))


def degrade(kind: str, clean: np.ndarray, rng: np.random.Generator, **params) -> np.ndarray:
    """Apply the registered degradation `kind` with `params`."""
    return DEGRADATIONS.get(kind)(clean, rng, **params)


# ----- ADS settings (seed 002, "Experiments dataset"): x = T * (x_gt + S) + (1 - T) * A


def _veil(rng: np.random.Generator, h: int, w: int, beta: tuple[float, float]) -> np.ndarray:
    """Transmission T = exp(-beta * d) of a smooth synthetic depth d (as in `haze`), H x W x 1."""
    ramp = np.linspace(1.0, 0.2, h)[:, None] * np.ones((1, w))
    depth = 0.6 * ramp + 0.4 * _smooth_field(rng, h, w, scale=max(h, w) / 6)
    return np.exp(-rng.uniform(*beta) * depth)[..., None]


def _rain_layer(rng: np.random.Generator, h: int, w: int, density: tuple[float, float],
                length: tuple[float, float]) -> np.ndarray:
    """Rain streaks S: sparse drops smeared along one direction within 25 degrees of vertical."""
    drops = (rng.random((h, w)) < rng.uniform(*density)) * rng.uniform(0.5, 1.0, (h, w))
    streak = rng.uniform(*length)
    kernel = _line_kernel(streak, 90.0 + rng.uniform(-25, 25), width=0.5)
    return np.clip(convolve_same(drops, kernel * streak * 0.8), 0, 1)[..., None]


def _snow_layer(rng: np.random.Generator, h: int, w: int, density: tuple[float, float]) -> np.ndarray:
    """Snow S: flakes of two sizes (soft discs), slightly smeared by their fall."""
    layer = np.zeros((h, w))
    for size, share in ((0.8, 1.0), (1.8, 0.3)):  # small and large flakes, fewer large ones
        flakes = (rng.random((h, w)) < rng.uniform(*density) * share).astype(np.float64)
        flakes = ndimage.gaussian_filter(flakes, size) * (2 * np.pi * size**2)
        fall = _line_kernel(rng.uniform(2.0, 5.0), 90.0 + rng.uniform(-30, 30))
        layer += ndimage.convolve(flakes, fall, mode="reflect")
    return np.clip(layer * rng.uniform(0.7, 1.0), 0, 1)[..., None]


@DEGRADATIONS.register()
def rain_veil(
    clean: np.ndarray,
    rng: np.random.Generator,
    density: tuple[float, float] = (0.002, 0.006),
    length: tuple[float, float] = (12.0, 30.0),
    beta: tuple[float, float] = (0.1, 0.4),
    airlight: tuple[float, float] = (0.7, 1.0),
) -> np.ndarray:
    """Rain with its veil, T * (x + S) + (1 - T) * A: ADS slides' rain model (Chen et al., CVPR 2022).

    S is a streak layer like `rain`'s, T a light transmission map (beta well below `haze`'s, so the
    streaks dominate), A a grey atmospheric light.
    """
    h, w = clean.shape[:2]
    transmission = _veil(rng, h, w, beta)
    streaks = _rain_layer(rng, h, w, density, length)
    return to_8bit_grid(transmission * (clean + streaks) + (1.0 - transmission) * rng.uniform(*airlight))


@DEGRADATIONS.register()
def snow(
    clean: np.ndarray,
    rng: np.random.Generator,
    density: tuple[float, float] = (0.004, 0.01),
    beta: tuple[float, float] = (0.1, 0.4),
    airlight: tuple[float, float] = (0.7, 1.0),
) -> np.ndarray:
    """Snow, T * (x + S) + (1 - T) * A with a snow-flake layer S: the ADS slides' Rain-Snow-Haze model."""
    h, w = clean.shape[:2]
    transmission = _veil(rng, h, w, beta)
    flakes = _snow_layer(rng, h, w, density)
    return to_8bit_grid(transmission * (clean + flakes) + (1.0 - transmission) * rng.uniform(*airlight))
