"""Settings as versioned data, the embedded suite's split, determinism and noise physics."""
import numpy as np
import pytest
from scipy.stats import norm

from harness.data import open_data
from harness.data.embedded import load_photos
from harness.data.degradations import DEGRADATIONS
from harness.scoring.evaluation import evaluate
from harness.settings import SETTINGS, get_setting
from zoo import UnknownNameError, create_model


def test_every_setting_is_versioned_and_uses_known_degradations():
    assert {"three_deg", "five_deg", "dehaze", "derain", "denoise", "deblur", "lowlight"} <= set(SETTINGS.names())
    for name in SETTINGS:
        setting = get_setting(name)
        assert setting.version in setting.changelog
        for task in setting.tasks:
            assert task.degradation.kind in DEGRADATIONS
    assert get_setting("three_deg").task_names == ["dehaze", "derain", "denoise_15", "denoise_25", "denoise_50"]
    assert get_setting("five_deg").task_names == ["dehaze", "derain", "denoise_25", "deblur", "lowlight"]


def test_unknown_setting_lists_valid_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'five_deg'.*three_deg"):
        get_setting("five_degs")


def test_training_crops_never_touch_test_pixels():
    for photo in load_photos():
        for patch in (48, 64, 128):
            rows, cols = photo.crop_positions_outside_box(patch)
            top, left, h, w = photo.box
            mask = np.zeros(photo.pixels.shape[:2], bool)
            mask[top : top + h, left : left + w] = True
            for r, c in list(zip(rows, cols))[:: max(len(rows) // 200, 1)]:
                assert not mask[r : r + patch, c : c + patch].any()


def test_test_inputs_are_fixed_and_shared_between_settings():
    a = open_data(get_setting("three_deg")).test_pairs("denoise_25")
    b = open_data(get_setting("five_deg")).test_pairs("denoise_25")
    assert [p.name for p in a] == [p.name for p in b]
    assert all(np.array_equal(x.degraded, y.degraded) for x, y in zip(a, b))
    assert open_data(get_setting("three_deg")).fingerprint() == open_data(get_setting("three_deg")).fingerprint()
    assert open_data(get_setting("three_deg")).fingerprint() != open_data(get_setting("five_deg")).fingerprint()


def test_training_samples_are_a_function_of_seed_and_index():
    source = open_data(get_setting("five_deg"))
    first, again = source.training_set(64, 10, seed=3), source.training_set(64, 10, seed=3)
    other = source.training_set(64, 10, seed=4)
    for i in range(10):
        assert np.array_equal(first[i]["degraded"], again[i]["degraded"])
    assert any(not np.array_equal(first[i]["target"], other[i]["target"]) for i in range(10))
    labels = {int(first[i]["task_index"]) for i in range(10)} | {int(other[i]["task_index"]) for i in range(10)}
    assert labels <= set(range(5)) and len(labels) > 1


def expected_identity_psnr(clean: np.ndarray, sigma: float) -> float:
    """PSNR of floor(clip(x + sigma*z, 0, 255)) against x, from the Gaussian CDF, not by sampling."""
    x = np.round(clean * 255).astype(int)
    values, counts = np.unique(x, return_counts=True)
    k = np.arange(256)
    squared_error = 0.0
    for v, n in zip(values, counts):
        upper = norm.cdf((k + 1 - v) / sigma)
        lower = norm.cdf((k - v) / sigma)
        p = upper - lower
        p[0] = upper[0]  # everything below 1 ends at 0 (clip, then truncate)
        p[-1] = 1 - lower[-1]  # everything at or above 255 ends at 255
        squared_error += n * float((p * (k - v) ** 2).sum())
    return 10 * np.log10(255.0**2 / (squared_error / x.size))


def identity_expectations(setting_name: str) -> dict[str, float]:
    """Expected identity PSNR per noise task on the suite's own test images (mean over images)."""
    setting = get_setting(setting_name)
    expected = {}
    for task in setting.tasks:
        if task.degradation.kind == "gaussian_noise":
            sigma = task.degradation.params["sigma"]
            expected[task.name] = float(np.mean([expected_identity_psnr(p.test_image, sigma) for p in load_photos()]))
    return expected


def test_identity_noise_psnr_matches_gaussian_physics():
    setting = get_setting("three_deg")
    result = evaluate(create_model("identity"), setting, open_data(setting))
    for task, expected in identity_expectations("three_deg").items():
        sigma = setting.tasks[setting.task_names.index(task)].degradation.params["sigma"]
        unclipped = 20 * np.log10(255 / sigma)  # 24.61 / 20.17 / 14.15 dB
        measured = result.tasks[task].means["psnr"]
        assert measured == pytest.approx(expected, abs=0.05)
        assert unclipped < measured < unclipped + 2.0  # clipping at 0 and 255 can only remove error
