"""Training budgets ("profiles"): how long and how big a run trains, by name."""
from __future__ import annotations

from dataclasses import dataclass

from zoo.registry import Registry


@dataclass(frozen=True)
class Profile:
    """Optimisation budget and recipe of a run (L1 loss, AdamW, cosine decay)."""

    name: str
    description: str
    steps: int
    batch_size: int
    patch_size: int
    lr: float
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)  # HAIR Sec. 4.1 (AdamW 0.9, 0.999)
    warmup_fraction: float = 0.05
    checkpoint_every: int = 100  # steps between Ray checkpoints (resume points)
    log_every: int = 10  # steps between logged training metrics
    # Micro-batches per step: each step's batch is split into this many parts whose gradients add
    # up before one optimiser step (and, data-parallel, one gradient sync), to fit a paper batch
    # into less memory. The result is the step the whole batch gives, up to rounding.
    accumulate: int = 1
    # The learning-rate schedule by name (harness/runs/schedules.py) and its shape: warm-up +
    # cosine reaching `min_lr` at `cosine_end` (a fraction of the stage), or a constant rate
    # multiplied by `drop_factor` from `drop_at` on.
    schedule: str = "warmup_cosine"
    cosine_end: float = 1.0
    min_lr: float = 0.0
    drop_at: float = 1.0
    drop_factor: float = 0.1
    # A paper's budget in epochs over the setting's repetition-weighted training set: the steps then
    # follow from the data and the batch (harness/runs/budget.py) and `steps` is not used.
    epochs: float | None = None
    citation: str = ""  # where a paper recipe's numbers come from (`harness list profiles`)


PROFILES: Registry[Profile] = Registry("profile")
for _profile in (
    Profile("smoke", "a few steps: checks that everything runs (tests)", steps=20, batch_size=4,
            patch_size=48, lr=1e-3, checkpoint_every=10, log_every=5),
    Profile("default", "the laptop budget: a couple of CPU minutes for a tiny model", steps=600,
            batch_size=8, patch_size=64, lr=1e-3, checkpoint_every=200),
    Profile("long", "a longer CPU/GPU run for meaningful small-model comparisons", steps=5000,
            batch_size=16, patch_size=96, lr=5e-4, checkpoint_every=500, log_every=25),
):
    PROFILES.add(_profile.name, _profile)

from harness.runs import recipes  # noqa: E402,F401  (registers the papers' recipes in PROFILES)
