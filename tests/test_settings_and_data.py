"""Settings as versioned data, the embedded suite's split, determinism and noise physics."""
import numpy as np
import pytest
from scipy.stats import norm

from harness.data import embedded, open_data
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


def test_training_crops_never_touch_test_pixels(monkeypatch):
    """The crops the training set yields, located pixel by pixel, lie outside every test box."""
    real = load_photos()
    # The same photos (shapes and test boxes) with each pixel holding its own coordinates:
    # row / 4096, column / 4096 and the photo's index / 16, exact in float32. Crop positions and
    # flips are drawn from a generator seeded by (seed, index) before any pixel is read, so the
    # coded set crops exactly the windows the real set crops.
    coded = []
    for index, photo in enumerate(real):
        rows, cols = np.mgrid[0 : photo.pixels.shape[0], 0 : photo.pixels.shape[1]].astype(np.float32)
        coordinates = np.stack([rows / 4096, cols / 4096, np.full_like(rows, index / 16)], axis=2)
        coded.append(embedded.Photo(photo.name, coordinates, photo.box))
    cases = [("five_deg", 48, 120), ("five_deg", 128, 60), ("hyperres_denoise", 64, 40)]
    real_sets = [embedded.EmbeddedTrainingSet(get_setting(name), patch, n, seed=0) for name, patch, n in cases]
    monkeypatch.setattr(embedded, "load_photos", lambda: tuple(coded))
    touched_photos = set()
    for (name, patch, n), real_set in zip(cases, real_sets):
        coded_set = embedded.EmbeddedTrainingSet(get_setting(name), patch, n, seed=0)
        for i in range(n):
            where = coded_set[i]["target"].numpy()
            where = where.reshape(-1, *where.shape[-3:])[0]  # hyperres: one crop under every view
            rows, cols = np.rint(where[0] * 4096).astype(int), np.rint(where[1] * 4096).astype(int)
            photo = real[int(np.rint(where[2, 0, 0] * 16))]
            touched_photos.add(photo.name)
            # a patch x patch window of the photo (possibly flipped) ...
            assert sorted(set(rows.ravel())) == list(range(rows.min(), rows.min() + patch))
            assert sorted(set(cols.ravel())) == list(range(cols.min(), cols.min() + patch))
            # ... that shares no pixel with the test box ...
            top, left, h, w = photo.box
            inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
            assert not inside.any(), (name, i, photo.name, rows.min(), cols.min())
            # ... and is exactly what the real training set yields as item i's target.
            target = real_set[i]["target"].numpy()
            target = target.reshape(-1, *target.shape[-3:])[0]
            np.testing.assert_array_equal(target, photo.pixels[rows, cols].transpose(2, 0, 1))
    assert len(touched_photos) >= 5  # the draws reach most photos, not one corner of one


def test_test_inputs_are_fixed_and_shared_between_settings():
    a = open_data(get_setting("three_deg")).test_pairs("denoise_25")
    b = open_data(get_setting("five_deg")).test_pairs("denoise_25")
    assert [p.name for p in a] == [p.name for p in b]
    assert all(np.array_equal(x.degraded, y.degraded) for x, y in zip(a, b))
    assert open_data(get_setting("three_deg")).fingerprint() == open_data(get_setting("three_deg")).fingerprint()
    assert open_data(get_setting("three_deg")).fingerprint() != open_data(get_setting("five_deg")).fingerprint()


@pytest.mark.parametrize("image_shape, kernel_shape", [((120, 160), (31, 31)), ((97, 64), (12, 7)), ((64, 64), (3, 3))])
def test_rain_convolution_is_scipy_signals_fftconvolve_bit_for_bit(image_shape, kernel_shape):
    """The synthesised rain (and so every fingerprint) is the same as with scipy.signal.fftconvolve."""
    from scipy.signal import fftconvolve

    from harness.data.degradations import convolve_same

    rng = np.random.default_rng(7)
    drops = (rng.random(image_shape) < 0.004) * rng.uniform(0.6, 1.0, image_shape)
    kernel = rng.random(kernel_shape)
    np.testing.assert_array_equal(convolve_same(drops, kernel), fftconvolve(drops, kernel, mode="same"))


def test_synthesising_the_suite_does_not_import_scipy_signal():
    """scipy.signal costs about 1 s per process; the driver and every trial synthesise the suite."""
    import subprocess
    import sys

    code = ("import sys; from harness.data import open_data; from harness.settings import get_setting; "
            "open_data(get_setting('rain_snow_haze')).fingerprint(); open_data(get_setting('three_deg')).fingerprint(); "
            "print('scipy.signal' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


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
