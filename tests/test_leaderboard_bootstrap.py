"""Bootstrap confidence intervals over test images: calibrated, per task and averaged, and paired."""
import numpy as np
import pytest

from leaderboards.bootstrap import mean_interval, paired_difference, run_intervals


def per_image(values_by_task):
    return {task: {f"img{i}": {"psnr": float(v), "ssim": float(v) / 100} for i, v in enumerate(values)}
            for task, values in values_by_task.items()}


def test_interval_of_a_mean_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(200):
        sample = rng.normal(30.0, 2.0, size=40)
        interval = mean_interval(sample, resamples=1000, seed=trial)
        hits += interval.low <= 30.0 <= interval.high
    assert 0.88 <= hits / 200 <= 0.99


def test_interval_width_matches_the_standard_error():
    sample = np.random.default_rng(2).normal(25.0, 3.0, size=400)
    interval = mean_interval(sample)
    expected = 2 * 1.96 * sample.std(ddof=1) / np.sqrt(len(sample))
    assert interval.high - interval.low == pytest.approx(expected, rel=0.1)
    assert interval.value == pytest.approx(sample.mean()) and interval.low < interval.value < interval.high


def test_identical_images_give_a_zero_width_interval_and_the_seed_fixes_the_result():
    assert mean_interval(np.full(7, 31.5)).low == mean_interval(np.full(7, 31.5)).high == 31.5
    sample = np.random.default_rng(3).normal(30, 1, size=7)
    assert mean_interval(sample) == mean_interval(sample)


def test_average_interval_resamples_within_each_task():
    rng = np.random.default_rng(4)
    scores = per_image({"dehaze": rng.normal(30, 2, 50), "derain": rng.normal(36, 0.01, 50)})
    intervals = run_intervals(scores, ["dehaze", "derain"])
    assert intervals["avg"].value == pytest.approx((intervals["dehaze"].value + intervals["derain"].value) / 2)
    # derain is nearly constant, so the average's spread is half of dehaze's
    width = lambda i: i.high - i.low  # noqa: E731
    assert width(intervals["avg"]) == pytest.approx(width(intervals["dehaze"]) / 2, rel=0.15)
    assert width(intervals["derain"]) < 0.01
    ssim = run_intervals(scores, ["dehaze", "derain"], metric="ssim")
    assert ssim["avg"].value == pytest.approx(intervals["avg"].value / 100)


def test_average_is_left_out_when_a_task_has_no_per_image_scores():
    scores = per_image({"dehaze": [30, 31, 29]})
    assert set(run_intervals(scores, ["dehaze", "derain"])) == {"dehaze"}


def test_paired_bootstrap_tells_a_consistent_0_05_db_lead_from_noise():
    """A 0.05 dB lead on every image is real; the same mean lead made of noise is not."""
    rng = np.random.default_rng(5)
    base = {task: rng.normal(30, 3, 7) for task in ("dehaze", "derain", "denoise_25")}
    second = per_image(base)
    consistent = per_image({t: v + 0.05 for t, v in base.items()})
    noisy = per_image({t: v + 0.05 + rng.normal(0, 1, 7) for t, v in base.items()})
    tasks = list(base)
    lead = paired_difference(consistent, second, tasks)
    assert lead.value == pytest.approx(0.05) and lead.excludes_zero()
    # two separate intervals of the same runs overlap almost entirely: unpaired they cannot tell
    first_avg, second_avg = run_intervals(consistent, tasks)["avg"], run_intervals(second, tasks)["avg"]
    assert first_avg.low < second_avg.high
    noise_lead = paired_difference(noisy, second, tasks)
    assert not noise_lead.excludes_zero()


def test_paired_difference_needs_the_same_images():
    first = per_image({"dehaze": [30, 31]})
    second = {"dehaze": {"other": {"psnr": 30.0, "ssim": 0.9}, "img1": {"psnr": 31.0, "ssim": 0.9}}}
    assert paired_difference(first, second, ["dehaze"]) is None
