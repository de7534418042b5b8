"""`harness claims run`: train what a claim needs, compare with seed intervals, give a verdict, record it.

Everything trains through the harness' own machinery: entries as one Ray Tune grid over (entry, seed)
(harness/runs/seeds.py), ADS through its four-stage pipeline (harness/ads/pipeline.py) once per seed.
One MLflow parent run in the experiment `restoration-bench/claims` records the claim: its budget,
seeds, each comparison (ours, both intervals, the paper's figure, the verdict) and claim.json; every
training run it started carries the tag `claim_parent`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from harness.claims import (CLAIM_EXPERIMENT, CLAIM_ROLE, INCONCLUSIVE, OPPOSITE, REPRODUCED, Budget, Claim,
                            Comparison, Entry)
from zoo.registry import Registry

EXPERIMENT, ROLE = CLAIM_EXPERIMENT, CLAIM_ROLE
EFFICIENCY_SIZE = 128  # the harness' efficiency input side (RunConfig.efficiency_size's default)
# Fixed cost of one training run beyond its steps and evaluation: a Ray trial actor that imports torch, MLflow and
# the zoo, the run's MLflow records, checkpoints and logged model (benchmarks/ray_sweep_overhead.py, one actor per
# trial: 13.7-17.1 s per trial on the 2-core machine), and Ray's own start once per claim (or per ADS pipeline).
TRIAL_OVERHEAD_S = 15.0
RAY_START_S = 10.0


@dataclass(frozen=True)
class Plan:
    """What a claim run will do: trainings, steps, and the expected training wall time on this machine."""

    claim: Claim
    budget: Budget
    seeds: tuple[int, ...]
    trainings: int
    parallel: int  # trials at once
    cpus_per_trial: int
    step_seconds: dict[str, float]  # measured here: one training step of each model at the budget's batch and patch
    expected_s: float  # the whole claim: training, evaluation and start-up
    training_s: float = 0.0
    evaluation_s: float = 0.0
    overhead_s: float = 0.0

    def text(self) -> str:
        """The plan as printed before anything starts."""
        lines = [f"Claim '{self.claim.name}' ({self.claim.paper}): {self.claim.statement}",
                 f"Budget '{self.budget.name}': {self.budget.steps} steps of profile '{self.budget.profile}', "
                 f"seeds {', '.join(map(str, self.seeds))}",
                 f"Runs: {self.trainings} trainings ({len(self.claim.entries())} configurations x {len(self.seeds)} seeds)"
                 f", {self.parallel} at a time with {self.cpus_per_trial} CPU(s) each"
                 + (" (the ADS pipeline per seed, one after another; other selections reuse its unified model and "
                    "classifier)" if self.claim.runner == "ads" else "")]
        for model, seconds in self.step_seconds.items():
            lines.append(f"  {model}: {seconds:.2f} s per training step (measured now)")
        lines.append(f"Expected wall time: about {_duration(self.expected_s)} (training {_duration(self.training_s)}, "
                     f"evaluation on the test images {_duration(self.evaluation_s)}, measured now; start-up about "
                     f"{_duration(self.overhead_s)}: {TRIAL_OVERHEAD_S:g} s per training and {RAY_START_S:g} s per Ray "
                     "start, from benchmarks/ray_sweep_overhead.py)")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    """'45 s' or '3.2 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@dataclass(frozen=True)
class Verdicted:
    """One comparison's outcome: ours (first minus second) with its intervals, beside the paper's figure."""

    label: str
    paper: float
    source: str
    ours: float | None
    images_ci: tuple[float, float] | None
    seeds_ci: tuple[float, float] | None
    verdict: str


@dataclass
class ClaimResult:
    """A finished claim run."""

    claim: str
    budget: str
    seeds: list[int]
    parent: str
    tracking_uri: str
    comparisons: list[Verdicted] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    macs: list[dict] = field(default_factory=list)
    verdict: str = INCONCLUSIVE
    wall_s: float = 0.0

    def text(self) -> str:
        """The paper's figures beside ours, each with its interval and verdict."""
        lines = [f"Claim '{self.claim}' at budget '{self.budget}' with seeds {', '.join(map(str, self.seeds))} "
                 f"(MLflow run {self.parent}, {self.wall_s / 60:.1f} min):"]
        for c in self.comparisons:
            ours = "-" if c.ours is None else f"{c.ours:+.3f} dB"
            seeds = "one seed: images only" if c.seeds_ci is None else f"seeds [{c.seeds_ci[0]:+.3f}, {c.seeds_ci[1]:+.3f}]"
            images = "" if c.images_ci is None else f"images [{c.images_ci[0]:+.3f}, {c.images_ci[1]:+.3f}]"
            lines.append(f"  {c.label}: paper {c.paper:+.3f} dB ({c.source}); ours {ours} {seeds} {images} -> {c.verdict}")
        for f in self.figures:
            lines.append(f"  {f['label']}: paper {f['paper']:g}{f['unit']} ({f['source']}); ours {f['ours']:.3f}{f['unit']} "
                         f"[{f['ci'][0]:.3f}, {f['ci'][1]:.3f}] (no verdict: an absolute figure)")
        for m in self.macs:
            lines.append(f"  {m['label']}: paper {m['paper']}; ours {m['first_gmacs']:.3f} / {m['second_gmacs']:.3f} GMACs "
                         f"at {EFFICIENCY_SIZE}x{EFFICIENCY_SIZE} (ratio {m['ratio']:.3f}; paper variants {m['paper_variant_ratio']:.3f})"
                         f" -> {m['verdict']}")
        lines.append(f"Verdict: {self.verdict}")
        return "\n".join(lines)


def verdict(paper: float, images: tuple[float, float] | None, seeds: tuple[float, float] | None) -> str:
    """Reproduced in direction / opposite when every interval we have excludes 0, else inconclusive."""
    intervals = [i for i in (images, seeds) if i is not None]
    if not intervals or any(low <= 0 <= high for low, high in intervals):
        return INCONCLUSIVE
    ours_positive = intervals[0][0] > 0
    if any((low > 0) != ours_positive for low, _ in intervals):
        return INCONCLUSIVE  # the two levels disagree in sign
    return REPRODUCED if ours_positive == (paper > 0) else OPPOSITE


def overall(verdicts: list[str]) -> str:
    """The claim's verdict: opposite if any part is, reproduced if every part is, else inconclusive."""
    if OPPOSITE in verdicts:
        return OPPOSITE
    return REPRODUCED if verdicts and all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


def run_config(entry: Entry, budget: Budget, seed: int = 0):
    """The RunConfig an entry trains with at `budget` (tiny variant; no efficiency columns or saved images)."""
    from harness.runs.config import RunConfig

    return RunConfig(model=entry.model, setting=entry.setting, variant="tiny", profile=budget.profile,
                     steps=budget.steps, seed=seed, blind=entry.blind, train_level=entry.train_level,
                     model_options=dict(entry.options), efficiency_size=0, save_outputs=False)


def _step_seconds(model: str, setting: str, budget: Budget, threads: int) -> float:
    """Seconds of one training step of `model` (tiny) at the budget's batch and patch, measured here."""
    import torch
    import torch.nn.functional as F

    from harness.runs.config import RunConfig
    from zoo import create_model
    from zoo.contract import Conditioning, TrainingStage

    run = RunConfig(model=model, setting=setting, profile=budget.profile).with_setting_options()
    profile = run.resolved_profile()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = create_model(model, "tiny", **run.model_options)
        x = torch.rand(profile.batch_size, 3, profile.patch_size, profile.patch_size)
        optimiser = torch.optim.AdamW(net.parameters(), lr=profile.lr)
        batch = profile.batch_size
        cond = Conditioning(task_index=torch.zeros(batch, dtype=torch.long), level=torch.full((batch,), 0.1),
                            degradation_index=torch.zeros(batch, dtype=torch.long))
        stage = net.training_stages()[-1] if hasattr(net, "training_stages") else TrainingStage("train")  # the main stage
        times = []
        for _ in range(2):  # the first step pays for allocation; the second is the figure
            started = time.perf_counter()
            net.training_loss(x, x, cond, F.l1_loss, stage).total.backward()
            optimiser.step()
            optimiser.zero_grad()
            times.append(time.perf_counter() - started)
        return times[-1]
    finally:
        torch.set_num_threads(previous)


class _FirstPairs:
    """A data source that gives the first test pair of each task only (to time one image per task)."""

    def __init__(self, data) -> None:
        self.data = data

    def test_pairs(self, task: str):
        """The first of the task's test pairs."""
        return self.data.test_pairs(task)[:1]

    def __getattr__(self, name: str):
        return getattr(self.data, name)


def _evaluation_seconds(entry: Entry, budget: Budget, threads: int) -> float:
    """Seconds to score `entry`'s model (tiny) on its setting's test images: one image per task timed, then scaled."""
    import torch

    from harness.data import open_data
    from harness.scoring.evaluation import evaluate
    from zoo import create_model

    run = run_config(entry, budget).with_setting_options()
    setting = run.resolved_setting()
    data = open_data(setting, run.data_root)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        net = create_model(entry.model, "tiny", **run.model_options)
        started = time.perf_counter()
        evaluate(net, setting, _FirstPairs(data), blind=entry.blind)
        one_per_task = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    pairs = sum(len(data.test_pairs(t)) for t in setting.task_names)
    return one_per_task * pairs / len(setting.task_names)


def make_plan(claim: Claim, budget: Budget, seeds: list[int], cpus: int | None = None) -> Plan:
    """Count the trainings, measure a step and an evaluation of each model, and add the start-up cost."""
    cpus = cpus or os.cpu_count() or 1
    entries = claim.entries()
    trainings = len(entries) * len(seeds)
    if claim.runner == "ads":
        parallel, per_trial = 1, cpus
    else:
        per_trial = max(cpus // trainings, 1)
        parallel = min(trainings, max(cpus // per_trial, 1))
    measured = {e.model: _step_seconds(e.model, e.setting, budget, per_trial) for e in entries}
    evaluations = {(e.model, e.setting, e.blind): _evaluation_seconds(e, budget, per_trial) for e in entries}
    evaluation = sum(evaluations[(e.model, e.setting, e.blind)] for e in entries) * len(seeds) / parallel
    if claim.runner == "ads":  # per seed: one whole pipeline, then masks + ADS stages per other selection
        from harness.ads.stages import BUDGET as STAGE_BUDGET, STAGES
        from harness.settings import get_setting

        host = next(e.model for e in entries if not e.model.endswith("_ads"))
        ads = next(e.model for e in entries if e.model.endswith("_ads"))
        others = len([e for e in entries if e.options])
        masks = STAGE_BUDGET.target * len(get_setting(entries[0].setting).degradation_kinds)  # a target per degradation
        host_steps = (STAGE_BUDGET.unified + STAGE_BUDGET.classifier + masks * (1 + others)) * budget.steps
        ads_steps = STAGE_BUDGET.ads * (1 + others) * budget.steps
        training = (measured[host] * host_steps + measured[ads] * ads_steps) * len(seeds)
        stage_trials = (len(STAGES) + 2 * others) * len(seeds)
        overhead = TRIAL_OVERHEAD_S * stage_trials + RAY_START_S * (1 + others) * len(seeds)
    else:
        training = sum(measured[e.model] * budget.steps for e in entries) * len(seeds) / parallel
        overhead = TRIAL_OVERHEAD_S * trainings / parallel + RAY_START_S
    return Plan(claim, budget, tuple(seeds), trainings, parallel, per_trial, measured,
                training + evaluation + overhead, training, evaluation, overhead)


def _merged(scores: list[dict], tasks: list[str]) -> dict:
    """The per-image scores of several runs of one seed merged task by task (each task from the run that has it)."""
    out: dict = {}
    for one in scores:
        for task in tasks:
            if task in one and task not in out:
                out[task] = one[task]
    return out


def _per_image(client, run_id: str) -> dict:
    from leaderboards.artifacts import per_image_metrics

    scores = per_image_metrics(client, run_id)
    if scores is None:
        raise RuntimeError(f"run {run_id} has no results/per_image.json")
    return scores


def compare(comparison: Comparison, runs: dict[Entry, list[str]], client, seeds: list[int]) -> Verdicted:
    """Ours (first minus second, average PSNR over the comparison's tasks) with both intervals, and the verdict."""
    from harness.settings import get_setting
    from leaderboards.bootstrap import seeded_difference

    tasks = list(comparison.tasks) or get_setting(comparison.first[0].setting).task_names
    sides = []
    for side in (comparison.first, comparison.second):
        per_seed = [[_per_image(client, runs[entry][i]) for entry in side] for i in range(len(seeds))]
        sides.append([_merged(scores, tasks) for scores in per_seed])
    difference = seeded_difference(sides[0], sides[1], tasks)
    if difference is None:
        return Verdicted(comparison.label, comparison.paper, comparison.source, None, None, None, INCONCLUSIVE)
    images = (difference.images.low, difference.images.high)
    seeds_ci = None if difference.seeds is None else (difference.seeds.low, difference.seeds.high)
    return Verdicted(comparison.label, comparison.paper, comparison.source, difference.images.value, images, seeds_ci,
                     verdict(comparison.paper, images, seeds_ci))


TrainFn = Callable[[Claim, Budget, list[int], object, str, str], dict[Entry, list[str]]]
RUNNERS: Registry[TrainFn] = Registry("claim runner")


@RUNNERS.register("seeds")
def train_seeds(claim: Claim, budget: Budget, seeds: list[int], cluster, uri: str, parent: str) -> dict[Entry, list[str]]:
    """Every entry of the claim once per seed, as one Tune grid; each entry's seed run ids, by seed order."""
    from harness.runs.seeds import submit_entries

    entries = claim.entries()
    results = submit_entries([run_config(e, budget) for e in entries], seeds, cluster, uri,
                             parent_tags={"claim": claim.name, "claim_parent": parent})
    return {e: [r.run_ids[s] for s in seeds] for e, r in zip(entries, results)}


@RUNNERS.register("ads")
def train_ads(claim: Claim, budget: Budget, seeds: list[int], cluster, uri: str, parent: str) -> dict[Entry, list[str]]:
    """ADS' four-stage pipeline once per seed and selection method.

    The default selection's pipeline (FAIG-SD) runs whole: its `ads` child stands for that entry and its
    `unified` child for the host. Every other selection method reuses that seed's unified model and
    classifier (they do not depend on the selection) and runs its own masks and ADS stages, so the
    methods differ in the filters they choose only, as in the slides' comparison.
    """
    from harness.ads.pipeline import _children, submit_pipeline
    from harness.runs import tracking

    entries = claim.entries()
    hosts = [e for e in entries if not e.model.endswith("_ads")]
    full = [e for e in entries if e.model.endswith("_ads") and not e.options]
    if len(hosts) != 1 or len(full) != 1:
        raise ValueError(f"claim '{claim.name}': the ADS runner needs one host entry and one default ADS entry")
    (host,), (ads,) = hosts, full
    others = [e for e in entries if e not in (host, ads)]
    mlflow = tracking.client(uri)
    out: dict[Entry, list[str]] = {e: [] for e in entries}
    for seed in seeds:
        result = submit_pipeline(run_config(ads, budget, seed), cluster, uri)
        tracking.set_tags(mlflow, result.run_id, {"claim": claim.name, "claim_parent": parent})
        children = _children(mlflow, result.run_id)
        out[ads].append(children["ads"].info.run_id)
        out[host].append(children["unified"].info.run_id)
        reuse = {stage: children[stage].info.run_id for stage in ("unified", "classifier")}
        for entry in others:
            other = submit_pipeline(run_config(entry, budget, seed), cluster, uri, reuse=reuse)
            tracking.set_tags(mlflow, other.run_id, {"claim": claim.name, "claim_parent": parent})
            out[entry].append(_children(mlflow, other.run_id)["ads"].info.run_id)
    return out


def _figures(claim: Claim, runs: dict[Entry, list[str]], client) -> list[dict]:
    """Each absolute figure: the mean over seeds of its per-image metric, with the two-level interval."""
    from harness.settings import get_setting
    from leaderboards.bootstrap import seed_intervals

    out = []
    for figure in claim.figures:
        scores = [_per_image(client, r) for r in runs[figure.entry]]
        tasks = get_setting(figure.entry.setting).task_names
        interval = seed_intervals(scores, tasks, figure.metric.split("/")[0])["avg"]
        out.append({"label": figure.label, "paper": figure.paper, "unit": figure.unit, "source": figure.source,
                    "ours": interval.value * figure.scale, "ci": [interval.low * figure.scale, interval.high * figure.scale]})
    return out


def _macs(claim: Claim) -> list[dict]:
    """Each MACs check, counted on the tiny and the paper variants at the harness' efficiency input."""
    import torch

    from harness.runs.config import RunConfig
    from harness.scoring.efficiency import count_macs_and_memory
    from zoo import create_model

    out = []
    for check in claim.macs:
        counted = {}
        for variant in ("tiny", "paper"):
            for model in (check.first, check.second):
                options = RunConfig(model=model, setting=check.setting, variant=variant).with_setting_options().model_options
                net = create_model(model, variant, **options).eval()
                with torch.no_grad():
                    counted[(variant, model)] = count_macs_and_memory(
                        net, torch.rand(1, 3, EFFICIENCY_SIZE, EFFICIENCY_SIZE))[0] / 1e9
        ratio = counted[("tiny", check.first)] / counted[("tiny", check.second)]
        paper_ratio = counted[("paper", check.first)] / counted[("paper", check.second)]
        out.append({"label": check.label, "paper": check.paper, "source": check.source,
                    "first_gmacs": counted[("tiny", check.first)], "second_gmacs": counted[("tiny", check.second)],
                    "ratio": ratio, "paper_variant_ratio": paper_ratio,
                    "verdict": REPRODUCED if ratio < 1 and paper_ratio < 1 else OPPOSITE})
    return out


def run_claim(claim: Claim, budget: Budget, seeds: list[int], cluster, explicit_uri: str | None = None,
              plan: Plan | None = None) -> ClaimResult:
    """Train what `claim` needs at `budget` for `seeds`, compare, and record it all under one MLflow parent run."""
    from harness.runs import tracking
    from harness.runs.environment import git_commit
    from harness.runs.store import tracking_uri

    started = time.monotonic()
    uri = tracking_uri(explicit_uri)
    mlflow = tracking.client(uri)
    tags = {"role": ROLE, "claim": claim.name, "claim.paper": claim.paper, "claim.citation": claim.citation,
            "claim.statement": claim.statement, "budget": budget.name, "seeds": ",".join(map(str, seeds)),
            "git_commit": git_commit()}
    params = {"budget.profile": budget.profile, "budget.steps": budget.steps, "seeds": ",".join(map(str, seeds))}
    if plan is not None:
        params.update({"plan.trainings": plan.trainings, "plan.expected_s": round(plan.expected_s, 1)})
    parent = tracking.start_run(mlflow, EXPERIMENT, f"claim-{claim.name}-{budget.name}-{uuid.uuid4().hex[:6]}", tags, params)
    print(f"MLflow claim run {parent} in {uri}", flush=True)
    result = ClaimResult(claim.name, budget.name, list(seeds), parent, uri)
    status = "FAILED"
    try:
        runs = RUNNERS.get(claim.runner)(claim, budget, seeds, cluster, uri, parent)
        result.comparisons = [compare(c, runs, mlflow, seeds) for c in claim.comparisons]
        result.figures = _figures(claim, runs, mlflow)
        result.macs = _macs(claim)
        result.verdict = overall([c.verdict for c in result.comparisons] + [m["verdict"] for m in result.macs])
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception as err:
        tracking.set_tags(mlflow, parent, {"error": str(err).splitlines()[-1] if str(err) else type(err).__name__})
        raise
    finally:
        result.wall_s = time.monotonic() - started
        if status == "FINISHED":
            _record(mlflow, parent, result)
        mlflow.set_terminated(parent, status)
    return result


def _record(mlflow, parent: str, result: ClaimResult) -> None:
    """The claim's outcome on its parent run: verdict tags, per-comparison metrics, and claim.json."""
    from harness.runs import tracking

    metrics = {"wall_s": result.wall_s}
    for i, c in enumerate(result.comparisons):
        if c.ours is not None:
            metrics[f"comparison{i}.ours"] = c.ours
        for name, ci in (("images", c.images_ci), ("seeds", c.seeds_ci)):
            if ci is not None:
                metrics[f"comparison{i}.{name}_ci_low"], metrics[f"comparison{i}.{name}_ci_high"] = ci
        metrics[f"comparison{i}.paper"] = c.paper
    tracking.log_metrics(mlflow, parent, {k: v for k, v in metrics.items() if not math.isnan(v)}, step=0)
    tracking.set_tags(mlflow, parent, {"verdict": result.verdict,
                                       **{f"comparison{i}.verdict": c.verdict for i, c in enumerate(result.comparisons)},
                                       **{f"comparison{i}.label": c.label for i, c in enumerate(result.comparisons)}})
    payload = dataclasses.asdict(result)
    tracking.log_json(mlflow, parent, json.loads(json.dumps(payload, default=str)), "claim.json")
