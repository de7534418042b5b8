"""PSNR/SSIM against scikit-image, the reference the all-in-one papers' evaluation calls."""
import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.data.degradations import degrade
from harness.scoring.metrics import prepare, psnr, rgb_to_y, score, ssim, ssim_gaussian
from harness.settings import MetricProtocol

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]


def pairs():
    """Real photos against real degradations of them (noise, blur, haze), as float images."""
    rng = np.random.default_rng(0)
    for name in PHOTOS:
        clean = getattr(data, name)()[:180, :220].astype(np.float32) / 255.0
        for kind, params in [("gaussian_noise", {"sigma": 25}), ("motion_blur", {}), ("haze", {})]:
            yield name, kind, clean.astype(np.float64), degrade(kind, clean, rng, **params).astype(np.float64)


def to_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).copy())[None]


@pytest.mark.parametrize("name,kind,clean,degraded", list(pairs()), ids=lambda v: v if isinstance(v, str) else "")
def test_psnr_and_ssim_match_scikit_image(name, kind, clean, degraded):
    ref_psnr = peak_signal_noise_ratio(clean, degraded, data_range=1.0)
    ref_ssim = structural_similarity(clean, degraded, data_range=1.0, channel_axis=2)
    ref_gauss = structural_similarity(clean, degraded, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False)
    # float64 images are scored in float64 (measured 4e-15 off scikit-image); float32 images,
    # the evaluation's fast path, measured at most 2.5e-7 off. Issue 25: 1e-6.
    for dtype in (torch.float64, torch.float32):
        x, y = to_batch(degraded).to(dtype), to_batch(clean).to(dtype)
        assert abs(psnr(x, y).item() - ref_psnr) < 1e-6, dtype
        assert abs(ssim(x, y).item() - ref_ssim) < 1e-6, dtype
        assert abs(ssim_gaussian(x, y).item() - ref_gauss) < 1e-6, dtype


def test_batched_scores_equal_per_image_scores():
    items = list(pairs())[:3]
    batch_x = torch.cat([to_batch(d) for *_, d in items])
    batch_y = torch.cat([to_batch(c) for _, _, c, _ in items])
    batched = score(batch_x, batch_y, MetricProtocol())
    for i, (_, _, c, d) in enumerate(items):
        assert batched["psnr"][i].item() == pytest.approx(peak_signal_noise_ratio(c, d, data_range=1.0), abs=1e-6)


def test_protocol_clips_outputs_before_scoring():
    clean = data.astronaut()[:64, :64].astype(np.float64) / 255.0
    overshoot = clean + 0.3  # a model output beyond the valid range
    clipped = score(to_batch(overshoot), to_batch(clean), MetricProtocol(clip=True))["psnr"].item()
    expected = peak_signal_noise_ratio(clean, np.clip(overshoot, 0, 1), data_range=1.0)
    assert clipped == pytest.approx(expected, abs=1e-6)


def test_luma_matches_scikit_image_bt601():
    rgb = data.coffee()[:50, :60].astype(np.float64) / 255.0
    reference = rgb2ycbcr(rgb)[..., 0] / 255.0
    assert np.abs(rgb_to_y(to_batch(rgb))[0, 0].numpy() - reference).max() < 1e-10


def test_border_crop_and_unknown_colour_space():
    x = torch.rand(1, 3, 20, 20)
    assert prepare(x, MetricProtocol(border=4)).shape[-2:] == (12, 12)
    # The numbers, not just the shape: scoring with border b equals scikit-image on the images
    # cropped by hand. The degradation is uneven (strong noise near the edges only), so a crop of
    # the wrong width or on the wrong sides gives a different number.
    _, _, clean, _ = next(pairs())
    rng = np.random.default_rng(3)
    degraded = clean + 0.01 * rng.standard_normal(clean.shape)
    degraded[:6] += 0.2 * rng.standard_normal(degraded[:6].shape)
    degraded[:, -6:] += 0.2 * rng.standard_normal(degraded[:, -6:].shape)
    degraded = np.clip(degraded, 0, 1)
    scores = score(to_batch(degraded), to_batch(clean), MetricProtocol(border=4))
    inner_clean, inner_degraded = clean[4:-4, 4:-4], degraded[4:-4, 4:-4]
    assert scores["psnr"].item() == pytest.approx(peak_signal_noise_ratio(inner_clean, inner_degraded, data_range=1.0), abs=1e-9)
    assert scores["ssim"].item() == pytest.approx(structural_similarity(inner_clean, inner_degraded, data_range=1.0,
                                                                        channel_axis=2), abs=1e-9)
    with pytest.raises(ValueError, match="colour 'lab'"):
        prepare(x, MetricProtocol(color="lab"))
