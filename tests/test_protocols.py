"""Metric protocols: PSNR and SSIM against scikit-image and pyiqa on real photographs, per protocol.

Documented differences between the libraries, each pinned by a test below:
* pyiqa adds 1e-8 to the MSE before the logarithm (pyiqa/archs/psnr_arch.py): its PSNR is lower
  by 10 / ln(10) * 1e-8 / MSE dB, about 1e-5 dB here.
* pyiqa's SSIM works on inputs scaled to 0..255 and rounded (MATLAB's uint8 images), and it clamps
  the contrast-structure term at zero (a ReLU in pyiqa/archs/ssim_arch.py); scikit-image and Wang's
  formula do not clamp, so windows whose errors are anti-correlated with the image score lower
  here than in pyiqa.
* pyiqa's default luma is YIQ's (0.299, 0.587, 0.114); the protocols' is BT.601 (MATLAB
  rgb2ycbcr), which pyiqa computes with color_space='ycbcr'.
* pyiqa has no uniform-window SSIM: the `promptir` forms are checked against scikit-image only.
"""
import dataclasses
import os

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.data.degradations import degrade
from harness.scoring.metrics import score, ssim
from harness.settings.protocols import PROTOCOLS, MetricProtocol, get_protocol, resolve_protocol
from zoo.registry import UnknownNameError

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def to_batch(image: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(dtype)


def photo_pairs(crop: int | None = 192):
    """(name, kind, clean, degraded): real photographs and real degradations, 8-bit values."""
    rng = np.random.default_rng(1)
    for name in PHOTOS:
        photo = getattr(data, name)()
        clean = (photo[:crop, :crop] if crop else photo).astype(np.float32) / 255.0
        for kind, params in [("gaussian_noise", {"sigma": 25}), ("motion_blur", {}), ("haze", {})]:
            degraded = np.round(np.clip(degrade(kind, clean, rng, **params), 0, 1) * 255) / 255
            yield name, kind, clean.astype(np.float64), degraded.astype(np.float64)


PAIRS = list(photo_pairs())


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb2ycbcr(rgb)[..., 0] / 255.0  # scikit-image's BT.601, in [16/255, 235/255]


def skimage_scores(clean, degraded, protocol: MetricProtocol) -> tuple[float, float]:
    """PSNR, SSIM of the protocol computed with scikit-image alone."""
    x, y = (luma(degraded), luma(clean)) if protocol.color == "y" else (degraded, clean)
    channel = None if protocol.color == "y" else 2
    gaussian = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) if protocol.ssim == "ssim_gaussian" else {}
    return (peak_signal_noise_ratio(y, x, data_range=1.0),
            structural_similarity(y, x, data_range=1.0, channel_axis=channel, **gaussian))


@pytest.mark.parametrize("protocol_name", ["promptir", "promptir_y", "wang", "wang_y"])
def test_protocols_match_scikit_image_on_photographs(protocol_name):
    protocol = get_protocol(protocol_name)
    x = torch.cat([to_batch(d) for *_, d in PAIRS])
    y = torch.cat([to_batch(c) for _, _, c, _ in PAIRS])
    ours64 = score(x, y, protocol)  # float64 inputs: computed in float64
    ours32 = score(x.float(), y.float(), protocol)  # the fast path
    for i, (name, kind, clean, degraded) in enumerate(PAIRS):
        ref_psnr, ref_ssim = skimage_scores(clean, degraded, protocol)
        assert abs(ours64["psnr"][i].item() - ref_psnr) < 1e-9, (name, kind)
        assert abs(ours64["ssim"][i].item() - ref_ssim) < 1e-10, (name, kind)
        # float32: measured at most 3.5e-7 dB and 3.4e-7 SSIM (luma protocols); issue 25: 1e-6
        assert abs(ours32["psnr"][i].item() - ref_psnr) < 1e-6, (name, kind)
        assert abs(ours32["ssim"][i].item() - ref_ssim) < 1e-6, (name, kind)


@pytest.fixture(scope="module")
def pyiqa_metrics():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pyiqa

    make = lambda name, **kw: pyiqa.create_metric(name, device="cpu", **kw)  # noqa: E731
    return {
        "psnr": make("psnr"),  # RGB, data range 1
        "psnry": make("psnry", color_space="ycbcr"),  # BT.601 luma, not rounded
        "psnry_255": make("psnry", color_space="ycbcr", data_range=255),  # luma rounded to 8 bits
        "ssimc": make("ssimc"),  # RGB, Gaussian, inputs x 255 rounded
        "ssim_y": make("ssim", color_space="ycbcr"),  # rounded BT.601 luma, Gaussian
        "ssim_matlab": make("ssim", color_space="ycbcr", downsample=True),
    }


def test_protocols_match_pyiqa_on_photographs(pyiqa_metrics):
    wang_y_rounded = dataclasses.replace(get_protocol("wang_y"), round_y=True)
    for name, kind, clean, degraded in PAIRS:
        x, y = to_batch(degraded, torch.float32), to_batch(clean, torch.float32)
        with torch.no_grad():
            theirs = {k: m(x, y).item() for k, m in pyiqa_metrics.items()}
        rgb, y601, wang = score(x, y, get_protocol("promptir")), score(x, y, get_protocol("promptir_y")), score(x, y, get_protocol("wang"))
        mse, mse_y = np.mean((degraded - clean) ** 2), np.mean((luma(degraded) - luma(clean)) ** 2)
        eps_shift, eps_shift_y = 10 / np.log(10) * 1e-8 / mse, 10 / np.log(10) * 1e-8 / mse_y  # pyiqa's MSE + 1e-8
        # pyiqa works in float32 (and converts to luma in float32): measured 8.6e-7 dB off the
        # shifted value in RGB, 2.1e-6 dB in luma; the shifts themselves are up to 4e-5 dB.
        assert rgb["psnr"].item() - theirs["psnr"] == pytest.approx(eps_shift, abs=2e-6), (name, kind)
        assert y601["psnr"].item() - theirs["psnry"] == pytest.approx(eps_shift_y, abs=5e-6), (name, kind)
        # pyiqa's clamp only raises SSIM; it matters where errors anti-correlate with the image
        # (a shifted edge under motion blur), hardly under noise or haze
        assert wang["ssim"].item() <= theirs["ssimc"] + 1e-6, (name, kind)
        assert theirs["ssimc"] - wang["ssim"].item() < (2e-3 if kind == "motion_blur" else 1e-4), (name, kind)
        ours_y = score(x, y, wang_y_rounded)["ssim"].item()
        assert ours_y <= theirs["ssim_y"] + 1e-6, (name, kind)
        assert theirs["ssim_y"] - ours_y < (1e-3 if kind == "motion_blur" else 1e-5), (name, kind)


def test_matlab_protocol_matches_pyiqa_downsampled_ssim(pyiqa_metrics):
    """Full-size photographs, so MATLAB's downsampling (f = round(min(H, W) / 256) = 2) applies."""
    rng = np.random.default_rng(2)
    for name in ["astronaut", "coffee"]:
        clean = getattr(data, name)().astype(np.float32) / 255.0
        degraded = np.round(np.clip(degrade("gaussian_noise", clean, rng, sigma=15), 0, 1) * 255) / 255
        x, y = to_batch(degraded, torch.float32), to_batch(clean, torch.float32)
        ours = score(x, y, get_protocol("matlab"))
        with torch.no_grad():
            # measured 1.6e-7 SSIM and 0.8-4.7e-6 dB, depending on the CPU's float32 summation order: pyiqa's
            # PSNR is a float32 number near 30 dB, where one unit in the last place is 1.9e-6 dB
            assert abs(ours["ssim"].item() - pyiqa_metrics["ssim_matlab"](x, y).item()) < 1e-6, name
            assert abs(ours["psnr"].item() - pyiqa_metrics["psnry_255"](x, y).item()) < 1e-5, name
        # the downsampling matters: without it the number differs by far more than the tolerance
        no_downsampling = dataclasses.replace(get_protocol("matlab"), ssim="ssim_gaussian")
        assert abs(score(x, y, no_downsampling)["ssim"].item() - ours["ssim"].item()) > 1e-2


def test_pyiqa_clamps_negative_contrast_structure_and_we_do_not(pyiqa_metrics):
    """A texture against its photographic negative: SSIM's cs term is negative nearly everywhere."""
    texture = data.grass()[:128, :128].astype(np.float64) / 255.0
    rgb = np.repeat(texture[..., None], 3, axis=2)
    negative = 1.0 - rgb
    ours = score(to_batch(negative, torch.float32), to_batch(rgb, torch.float32), get_protocol("wang"))["ssim"].item()
    reference = structural_similarity(rgb, negative, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    with torch.no_grad():
        theirs = pyiqa_metrics["ssimc"](to_batch(negative, torch.float32), to_batch(rgb, torch.float32)).item()
    assert ours == pytest.approx(reference, abs=1e-6) and ours < -0.5  # measured 7e-9
    assert 0.0 <= theirs < 0.01  # clamped at zero


def test_chunked_threaded_batch_equals_image_by_image():
    torch.set_num_threads(max(2, torch.get_num_threads()))
    x = torch.cat([to_batch(d, torch.float32) for *_, d in PAIRS])
    y = torch.cat([to_batch(c, torch.float32) for _, _, c, _ in PAIRS])
    batched = score(x, y, get_protocol("promptir"))
    for i in range(len(PAIRS)):
        single = score(x[i : i + 1], y[i : i + 1], get_protocol("promptir"))
        assert batched["ssim"][i].item() == pytest.approx(single["ssim"].item(), abs=1e-12)
        assert batched["psnr"][i].item() == pytest.approx(single["psnr"].item(), abs=1e-9)
    assert ssim(x[:2].double(), y[:2].double()).dtype == torch.float64


@pytest.mark.parametrize("form", ["ssim", "ssim_gaussian"])
def test_gpu_path_torch_ops_equal_the_fused_cpu_kernel_and_scikit_image(form):
    """The batched torch operations a GPU runs (here on CPU) and the fused CPU kernel agree in float32."""
    from harness.scoring.metrics import SSIM_FORMS, _planes_ssim, _planes_ssim_cpu

    window = SSIM_FORMS.get(form).window
    gaussian = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) if form == "ssim_gaussian" else {}
    for _, _, clean, degraded in PAIRS[::3]:
        x, y = to_batch(degraded, torch.float32)[0, :, None], to_batch(clean, torch.float32)[0, :, None]
        torch_ssim, torch_mse = _planes_ssim(x, y, 1.0, window)
        fused_ssim, fused_mse = _planes_ssim_cpu(x, y, 1.0, window)
        reference = structural_similarity(clean, degraded, data_range=1.0, channel_axis=2, **gaussian)
        # measured 2.4e-7 SSIM for both paths, 2.2e-8 and 1.1e-8 relative on the MSE
        assert torch_ssim.mean().item() == pytest.approx(reference, abs=1e-6)
        assert fused_ssim.mean().item() == pytest.approx(reference, abs=1e-6)
        assert torch.allclose(torch_mse, fused_mse, rtol=1e-7, atol=0)
        assert fused_mse.mean().item() == pytest.approx(np.mean((clean - degraded) ** 2), rel=1e-7)


def test_clipping_inside_the_kernel_equals_clipping_first_and_keeps_nan():
    """The promptir protocol's clipping (fused into the CPU kernel) equals clipping the images first;
    a NaN pixel, as a diverged model writes, scores NaN rather than a clipped number."""
    _, _, clean, degraded = PAIRS[0]
    overshoot = degraded * 1.4 - 0.2  # values below 0 and above 1
    scores = score(to_batch(overshoot, torch.float32), to_batch(clean, torch.float32), get_protocol("promptir"))
    clipped = np.clip(overshoot, 0, 1)
    # measured 3.6e-7 SSIM and 1.5e-8 dB
    assert scores["ssim"].item() == pytest.approx(structural_similarity(clean, clipped, data_range=1.0, channel_axis=2), abs=1e-6)
    assert scores["psnr"].item() == pytest.approx(peak_signal_noise_ratio(clean, clipped, data_range=1.0), abs=1e-6)
    broken = to_batch(degraded, torch.float32)
    broken[0, 1, 40, 50] = float("nan")
    nan_scores = score(torch.cat([broken, to_batch(degraded, torch.float32)]),
                       to_batch(clean, torch.float32).repeat(2, 1, 1, 1), get_protocol("promptir"))
    assert torch.isnan(nan_scores["ssim"][0]) and torch.isnan(nan_scores["psnr"][0])
    assert torch.isfinite(nan_scores["ssim"][1]) and torch.isfinite(nan_scores["psnr"][1])


def test_protocol_registry_and_errors():
    assert {"promptir", "promptir_y", "wang", "wang_y", "matlab"} <= set(PROTOCOLS.names())
    with pytest.raises(UnknownNameError, match="Valid protocols: matlab, promptir"):
        get_protocol("prompt")
    with pytest.raises(ValueError, match="SSIM variant 'ssim_box' is not one of: ssim, ssim_gaussian, ssim_matlab"):
        MetricProtocol(ssim="ssim_box")
    custom = resolve_protocol({"name": "promptir_y", "border": 4})
    assert (custom.name, custom.border, custom.color) == ("promptir_y+custom", 4, "y")
    assert resolve_protocol({"name": "promptir", "color": "rgb"}) is get_protocol("promptir")
    with pytest.raises(ValueError, match=r"differ in shape"):
        score(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 30), get_protocol("promptir"))
    params = get_protocol("matlab").params()
    assert params["protocol.name"] == "matlab" and params["protocol.round_y"] is True
