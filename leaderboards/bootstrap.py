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


# Two levels: training seeds, then test images within each seed (issue 24). A seeded entry's score
# is the mean over its seeds of the run score; resampling only images would ignore how much a
# score moves when the same model is trained again with another seed.
SEED_STREAM = 1  # the seed-level draws come from their own generator: one seed leaves the image draws as above


def _seed_task_matrix(seeds: list[PerImage], task: str, metric: str) -> np.ndarray:
    """Seeds x images values of `task` (the images of the first seed, in name order)."""
    names = sorted(seeds[0][task])
    return np.stack([_task_matrix(scores, task, metric, names) for scores in seeds])


def seed_intervals(seeds: list[PerImage], tasks: list[str], metric: str = "psnr", resamples: int = RESAMPLES,
                   seed: int = SEED, level: float = LEVEL) -> dict[str, Interval]:
    """Like `run_intervals` for an entry trained once per seed: each replicate draws the seeds with
    replacement, then, for each drawn seed, that seed's test images with replacement (within each task).

    The value is the mean over seeds of each seed's mean; with one seed this is `run_intervals` exactly.
    Tasks missing from any seed are left out, and then "avg" is left out too.
    """
    image_rng = np.random.default_rng(seed)
    chosen = np.random.default_rng([seed, SEED_STREAM]).integers(0, len(seeds), size=(resamples, len(seeds)))
    out: dict[str, Interval] = {}
    draws = []
    for task in tasks:
        if any(task not in scores for scores in seeds):
            continue
        values = _seed_task_matrix(seeds, task, metric)  # seeds x images
        images = image_rng.integers(0, values.shape[1], size=(resamples, len(seeds), values.shape[1]))
        means = values[chosen[:, :, None], images].mean(axis=(1, 2))
        draws.append(means)
        out[task] = Interval(float(values.mean()), *_percentiles(means, level))
    if draws and len(draws) == len(tasks):
        out["avg"] = Interval(float(np.mean([out[t].value for t in tasks])), *_percentiles(np.mean(draws, axis=0), level))
    return out


def _seed_scores(seeds: list[PerImage], tasks: list[str], metric: str) -> np.ndarray:
    """Each seed's average over tasks of its mean `metric` (all its images)."""
    return np.array([np.mean([_task_matrix(s, t, metric).mean() for t in tasks]) for s in seeds])


def _mean_over_seeds(seeds: list[PerImage], tasks: list[str], metric: str) -> PerImage | None:
    """Per image, the mean over seeds of `metric` (None unless every seed scored the same images)."""
    out: PerImage = {}
    for task in tasks:
        if any(task not in s or set(s[task]) != set(seeds[0][task]) for s in seeds):
            return None
        out[task] = {name: {metric: float(np.mean([s[task][name][metric] for s in seeds]))} for name in seeds[0][task]}
    return out


@dataclass(frozen=True)
class SeededDifference:
    """A paired difference of two entries at both levels: test images (paired), and seeds (None with one seed each)."""

    images: Interval
    seeds: Interval | None

    def clear(self) -> bool:
        """A lead only when both levels' intervals exclude 0."""
        return self.images.excludes_zero() and (self.seeds is None or self.seeds.excludes_zero())


def seeded_difference(first: list[PerImage], second: list[PerImage], tasks: list[str], metric: str = "psnr",
                      resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> SeededDifference | None:
    """Average-over-tasks `metric` of entry `first` minus `second` (each a list of its seeds' per-image scores).

    Image level: `paired_difference` of the two entries' per-image means over seeds (today's lead with one
    seed each). Seed level: each entry's seeds resampled independently (they are separate trainings),
    every image kept, the difference of the two mean seed scores. None when the images differ.
    """
    firsts, seconds = _mean_over_seeds(first, tasks, metric), _mean_over_seeds(second, tasks, metric)
    if firsts is None or seconds is None:
        return None
    images = paired_difference(firsts, seconds, tasks, metric, resamples, seed, level)
    if images is None:
        return None
    if len(first) == 1 and len(second) == 1:
        return SeededDifference(images, None)
    rng = np.random.default_rng([seed, SEED_STREAM])
    a, b = _seed_scores(first, tasks, metric), _seed_scores(second, tasks, metric)
    draws = (a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
             - b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1))
    return SeededDifference(images, Interval(float(a.mean() - b.mean()), *_percentiles(draws, level)))
