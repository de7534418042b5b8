"""`harness submit --dry-run`: the plan of a run (recipe, epochs, steps, batches, workers) and its
expected wall time from a few training steps measured here; nothing is tracked and Ray does not start.

The measured step is one worker's: its slice of the effective batch (in its micro-batches) through
forward, backward and the optimiser, on this machine's CPU and on its GPU when it has one. The
expected time is steps x that step, so it leaves out the gradient all-reduce between workers and
data loading, which a cluster adds.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from harness.runs.budget import Budget, budget_of, epoch_size, plan_budget, published
from harness.runs.config import RunConfig

WARMUP_STEPS = 1  # the first step allocates and (on a GPU) initialises kernels: not timed


@dataclass(frozen=True)
class StepTime:
    """Seconds per training step of one worker on one device, over `steps` timed steps."""

    device: str
    seconds: float
    steps: int


@dataclass(frozen=True)
class Plan:
    """What `harness submit` would do with these arguments, and how long it would take."""

    run: RunConfig
    budget: Budget
    published: Budget | None  # the same recipe on the published training sets (when the run's data is not those)
    data_name: str
    step_times: tuple[StepTime, ...]


def measure_step(run: RunConfig, data, budget: Budget, device: str, steps: int) -> StepTime:
    """Time `steps` training steps (after a warm-up one) of one worker's slice of the batch on `device`."""
    from harness.runs.training import train
    from zoo import create_model

    torch.manual_seed(run.seed)
    model = create_model(run.model, run.variant, **run.model_options)
    profile = dataclasses.replace(run.resolved_profile(), steps=WARMUP_STEPS + steps, batch_size=budget.per_worker_batch,
                                  log_every=1, checkpoint_every=10**9)
    dataset = data.training_set(profile.patch_size, profile.steps * profile.batch_size, run.seed)
    stamps: list[float] = []
    train(model, dataset, profile, device=device, on_log=lambda step, metrics: stamps.append(time.perf_counter()))
    return StepTime(device, (stamps[-1] - stamps[0]) / steps, steps)


def devices() -> list[str]:
    """Where to measure: this machine's CPU, and its GPU when it has one."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_plan(run: RunConfig, workers: int = 1, steps: int = 2) -> Plan:
    """Resolve `run` as `harness submit` does and time `steps` of its training steps on every local device."""
    from harness.data import open_data
    from harness.data.real import RealData

    run.validate()
    run = run.with_setting_options()
    data = open_data(run.resolved_setting(), run.data_root)
    budget = plan_budget(run, data, workers)
    reference = None
    if not isinstance(data, RealData) and run.resolved_profile().epochs is not None:
        try:
            reference = budget_of(run, epoch_size(data.setting, published), workers)
        except ValueError:  # a training set without a published count
            reference = None
    times = tuple(measure_step(run, data, budget, device, steps) for device in devices())
    return Plan(run, budget, reference, data.name, times)


def _hours(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


def plan_text(plan: Plan) -> str:
    """The plan as the lines `--dry-run` prints."""
    run, budget = plan.run, plan.budget
    profile = dataclasses.replace(run.resolved_profile(), steps=budget.steps)
    micro = budget.per_worker_batch // budget.accumulate
    schedule = {"warmup_cosine": f"warm-up {profile.warmup_fraction:.3g} of the steps, cosine to {profile.min_lr:g} "
                                 f"at {profile.cosine_end:.3g} of them",
                "step_decay": f"x{profile.drop_factor:g} from {profile.drop_at:.4g} of the steps"}.get(profile.schedule, "")
    lines = [
        f"plan: {run.model} ({run.variant}) on {run.setting}, profile {run.profile}"
        + (f" ({profile.citation})" if profile.citation else ""),
        f"  data          {plan.data_name}: {budget.epoch_size:,} samples per epoch (repetition-weighted)",
        f"  budget        {budget.epochs:.4g} epochs = {budget.steps:,} steps"
        + (f" (recipe: {profile.epochs:g} epochs)" if profile.epochs is not None else ""),
        f"  batch         effective {budget.effective_batch} = {budget.workers} worker(s) x {budget.per_worker_batch}"
        f" per worker (accumulate {budget.accumulate}: micro-batches of {micro}); patches {profile.patch_size}",
        f"  optimiser     AdamW lr {profile.lr:g}, betas {profile.betas}, weight decay {profile.weight_decay:g}; "
        f"{profile.schedule}: {schedule}",
    ]
    if plan.published is not None:
        ref = plan.published
        lines.append(f"  paper data    on the published training sets ({ref.epoch_size:,} samples per epoch): "
                     f"{ref.steps:,} steps for {ref.epochs:.4g} epochs")
    for measured in plan.step_times:
        where = f"{measured.device} ({torch.get_num_threads()} threads)" if measured.device == "cpu" else \
            f"{measured.device} ({torch.cuda.get_device_name()})"
        lines.append(f"  step time     {where}: {measured.seconds:.3f} s per step of one worker's {budget.per_worker_batch} "
                     f"patches (mean of {measured.steps} after {WARMUP_STEPS} warm-up)")
        lines.append(f"  expected      {_hours(budget.steps * measured.seconds)} for {budget.steps:,} steps on "
                     f"{measured.device} workers like this one"
                     + (f"; {_hours(plan.published.steps * measured.seconds)} for the published sets' "
                        f"{plan.published.steps:,}" if plan.published is not None else ""))
    lines.append("  (steps x measured step; the all-reduce between workers and data loading come on top)")
    return "\n".join(lines)
