"""95% confidence intervals from per-image metrics: a percentile bootstrap over test images.

A run's score on a task is the mean over that task's test images; resampling the images with
replacement (fixed seed) gives the spread of that mean. The tables' Average is the unweighted
mean of the task means, so its interval resamples images within each task, independently.
Comparing two runs scored on the same images, resampling the same images for both (a paired
bootstrap) tells a real lead from noise far better than two overlapping intervals do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95

PerImage = dict[str, dict[str, dict[str, float]]]  # task -> image -> metric -> value (results/per_image.json)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_means(values: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Means of `resamples` bootstrap samples of the rows of `values` (images x series)."""
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[idx].mean(axis=1)


def mean_interval(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval:
    """The mean of `values` with its bootstrap confidence interval."""
    values = np.asarray(values, dtype=float)
    means = _resampled_means(values[:, None], np.random.default_rng(seed), resamples)[:, 0]
    return Interval(float(values.mean()), *_percentiles(means, level))


def _task_matrix(per_image: PerImage, task: str, metric: str, images: list[str] | None = None) -> np.ndarray:
    scores = per_image[task]
    names = images if images is not None else sorted(scores)
    return np.array([scores[name][metric] for name in names], dtype=float)


def run_intervals(per_image: PerImage, tasks: list[str], metric: str = "psnr", resamples: int = RESAMPLES,
                  seed: int = SEED, level: float = LEVEL) -> dict[str, Interval]:
    """Intervals of each task's mean `metric` and of their unweighted average ("avg").

    Tasks missing from `per_image` are left out, and then "avg" is left out too.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, Interval] = {}
    draws = []
    for task in tasks:
        if task not in per_image:
            continue
        values = _task_matrix(per_image, task, metric)
        means = _resampled_means(values[:, None], rng, resamples)[:, 0]
        draws.append(means)
        out[task] = Interval(float(values.mean()), *_percentiles(means, level))
    if draws and len(draws) == len(tasks):
        average = np.mean(draws, axis=0)
        point = float(np.mean([out[t].value for t in tasks]))
        out["avg"] = Interval(point, *_percentiles(average, level))
    return out


def paired_difference(first: PerImage, second: PerImage, tasks: list[str], metric: str = "psnr",
                      resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Interval | None:
    """Average-over-tasks `metric` of `first` minus `second`, resampling the same images for both.

    None when the two runs were not scored on the same images of every task.
    """
    rng = np.random.default_rng(seed)
    draws, points = [], []
    for task in tasks:
        if task not in first or task not in second or set(first[task]) != set(second[task]):
            return None
        names = sorted(first[task])
        diff = _task_matrix(first, task, metric, names) - _task_matrix(second, task, metric, names)
        draws.append(_resampled_means(diff[:, None], rng, resamples)[:, 0])
        points.append(diff.mean())
    if not draws:
        return None
    return Interval(float(np.mean(points)), *_percentiles(np.mean(draws, axis=0), level))
