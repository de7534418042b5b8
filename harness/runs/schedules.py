"""Learning-rate schedules by name: a profile's `schedule` field picks one (warm-up + cosine by default).

Each schedule maps (profile, stage span, global step) to the learning rate of that step; a
stage's `lr_scale` multiplies it. The papers' recipes (harness/runs/recipes.py) name the
schedule their source used.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

from zoo.registry import Registry

if TYPE_CHECKING:  # the training loop imports this module; the types only annotate
    from harness.runs.profiles import Profile
    from harness.runs.training import StageSpan

Schedule = Callable[["Profile", "StageSpan", int], float]
SCHEDULES: Registry[Schedule] = Registry("learning-rate schedule")


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(profile: "Profile", span: "StageSpan", step: int) -> float:
    """Linear warm-up over `warmup_fraction` of the stage, then a cosine that reaches `min_lr` at `cosine_end`.

    With `cosine_end` above 1 the stage ends before the cosine's floor (PromptIR: 120 of 150
    epochs); past its end the cosine rises again, as the closed form of LinearWarmupCosineAnnealingLR
    does (the authors' HAIR code: 300 epochs against a cosine of 150).
    """
    length = max(span.end - span.start, 1)
    t = (step - span.start) / length
    warm = profile.warmup_fraction
    period = profile.cosine_end - warm
    factor = (t + 1.0 / length) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / period))
    peak = profile.lr * span.stage.lr_scale
    if profile.min_lr:
        return profile.min_lr + (peak - profile.min_lr) * min(factor, 1.0)
    return peak * min(factor, 1.0)


@SCHEDULES.register("step_decay")
def step_decay(profile: "Profile", span: "StageSpan", step: int) -> float:
    """A constant rate, multiplied by `drop_factor` from `drop_at` (a fraction of the stage) on."""
    length = max(span.end - span.start, 1)
    t = (step - span.start) / length
    factor = profile.drop_factor if t >= profile.drop_at else 1.0
    return profile.lr * span.stage.lr_scale * factor
