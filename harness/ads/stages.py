"""The four stages of the ADS pipeline, each run as one Ray Tune trial (seed 002, "Method: Step 1-4").

Each stage reads the artifacts of the stages before it from their MLflow runs, trains, logs its
metrics into its own (child) MLflow run and stores its output there as a safetensors artifact:

1. ``unified``    the host trained on every degradation (theta_um); evaluated, a leaderboard row
2. ``masks``      per degradation d a target model fine-tuned from theta_um, the filter scores of
                  the chosen selection method, the top-q% masks M_d and theta_d - theta_um
3. ``classifier`` the degradation classifier (DC), trained on the degraded inputs
4. ``ads``        CNN-ADS (theta_um + sum_d c_d theta_d M_d): the added kernels trained, evaluated
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.data import open_data
from harness.scoring.evaluation import evaluate
from harness.runs.profiles import Profile
from harness.runs.training import train
from zoo import model_config
from zoo.ads import (SELECTIONS, ClassifierTraining, DegradationClassifier, NAFNetADS, SelectionInputs,
                     kernel_weights, top_filters)
from zoo.nafnet import NAFNet

STAGES = ("unified", "masks", "classifier", "ads")
ARTIFACT = {"unified": "unified.safetensors", "masks": "masks.safetensors",
            "classifier": "classifier.safetensors", "ads": "ads.safetensors"}


@dataclass(frozen=True)
class StageBudget:
    """Training steps of each stage as a fraction of the profile's steps.

    The slides give no schedule; the unified model gets the full budget (the same as any other
    model on the leaderboard), each target fine-tune and the classifier a quarter, CNN-ADS half.
    """

    unified: float = 1.0
    target: float = 0.25
    classifier: float = 0.25
    ads: float = 0.5
    faig_batches: int = 2  # batches per degradation FAIG-SD is averaged over (CPU budget)

    def steps(self, profile: Profile, stage: str) -> int:
        """Steps of `stage` under `profile` (at least one)."""
        return max(1, int(round(profile.steps * getattr(self, stage))))


BUDGET = StageBudget()


class StageContext:
    """What every stage needs: the run, its data, the MLflow run it logs to, earlier stages' outputs."""

    def __init__(self, config: dict[str, Any]):
        self.run = RunConfig(**config["run"])
        self.setting, self.profile = self.run.resolved_setting(), self.run.resolved_profile()
        self.data = open_data(self.setting, self.run.data_root)
        self.ads = model_config(self.run.model, self.run.variant, **self.run.model_options)
        self.mlflow = tracking.client(config["tracking_uri"])
        self.run_id: str = config["run_id"]
        self.inputs: dict[str, str] = config.get("inputs", {})  # stage -> run id holding its artifact
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    def artifact(self, stage: str) -> dict[str, torch.Tensor]:
        """The safetensors output of an earlier `stage` (downloaded from its MLflow run)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.mlflow.download_artifacts(self.inputs[stage], f"stage/{ARTIFACT[stage]}", tmp)
            return load_file(path)

    def save(self, stage: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store this stage's output as `stage/<name>.safetensors` in its MLflow run."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ARTIFACT[stage]
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
            self.mlflow.log_artifact(self.run_id, str(path), "stage")

    def train(self, model, steps: int, setting=None, seed_offset: int = 0, label: str = "") -> None:
        """Train `model` for `steps` with the profile's recipe on `setting` (default: the run's), logging losses."""
        profile = dataclasses.replace(self.profile, steps=steps)
        data = self.data if setting is None else open_data(setting, self.run.data_root)
        dataset = data.training_set(profile.patch_size, steps * profile.batch_size, self.run.seed + seed_offset)

        def on_log(step: int, metrics: dict[str, float]) -> None:
            from ray import tune

            tracking.log_metrics(self.mlflow, self.run_id, {k.replace("train/", f"train{label}/"): v
                                                            for k, v in metrics.items()}, step)
            tune.report({"phase": "train", "step": step})  # where Tune can stop the trial (Ctrl+C, SIGTERM)

        train(model, dataset, profile, on_log=on_log, device=self.device)

    def evaluate_and_log(self, model) -> dict[str, float]:
        """Score `model` on every task, log metrics, per-image scores, samples and efficiency."""
        from harness.scoring.efficiency import EfficiencyConfig, measure

        result = evaluate(model, self.setting, self.data, self.device, save_outputs=self.run.save_outputs)
        metrics = tracking.log_evaluation(self.mlflow, self.run_id, result, step=self.profile.steps)
        if self.run.efficiency_size:
            figures = measure(model, EfficiencyConfig(size=self.run.efficiency_size, repeats=1))
            tracking.log_metrics(self.mlflow, self.run_id, figures.metrics(), step=self.profile.steps)
        return metrics


def kind_setting(setting, kind: str):
    """`setting` restricted to the tasks of one degradation kind (a target model's data)."""
    tasks = tuple(t for t in setting.training_tasks if t.degradation.kind == kind)
    return dataclasses.replace(setting, tasks=tasks, train_tasks=())


def _batches(ctx: StageContext, setting, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` training batches of `setting` (degraded, clean) for FAIG."""
    data = open_data(setting, ctx.run.data_root)
    size = ctx.profile.batch_size
    dataset = data.training_set(ctx.profile.patch_size, count * size, seed)
    batches = []
    for b in range(count):
        items = [dataset[b * size + i] for i in range(size)]
        batches.append((torch.stack([x["degraded"] for x in items]).to(ctx.device),
                        torch.stack([x["target"] for x in items]).to(ctx.device)))
    return batches


def stage_unified(ctx: StageContext) -> dict[str, float]:
    """Step 1: the unified model on all degradations; evaluated like any leaderboard model."""
    model = NAFNet(ctx.ads.host)
    ctx.train(model, BUDGET.steps(ctx.profile, "unified"))
    metrics = ctx.evaluate_and_log(model)
    ctx.save("unified", model.state_dict())
    return metrics


def stage_masks(ctx: StageContext) -> dict[str, float]:
    """Step 2: per degradation a target model, filter scores, top-q% masks M_d and theta_d - theta_um."""
    unified = NAFNet(ctx.ads.host)
    unified.load_state_dict(ctx.artifact("unified"))
    unified.to(ctx.device)
    theta_um = {k: v.detach().clone() for k, v in unified.named_parameters()}
    kinds = ctx.setting.degradation_kinds
    targets, batches = [], []
    for d, kind in enumerate(kinds):
        target = copy.deepcopy(unified)
        ctx.train(target, BUDGET.steps(ctx.profile, "target"), kind_setting(ctx.setting, kind), 1000 + d,
                  f"_target_{kind}")
        targets.append({k: v.detach().clone() for k, v in target.named_parameters()})
        batches.append(_batches(ctx, kind_setting(ctx.setting, kind), BUDGET.faig_batches, ctx.run.seed + 2000 + d))
    unified.eval()
    inputs = SelectionInputs(unified, theta_um, targets, batches, ctx.ads.faig_steps, ctx.run.seed)
    method = SELECTIONS.get(ctx.ads.selection)
    output, summary = {}, {}
    names = list(kernel_weights(unified))
    for d, kind in enumerate(kinds):
        scores = method(inputs, d)
        masks = top_filters(scores, ctx.ads.q)
        for n in names:
            output[f"{d}/mask/{n}"] = masks[n].to(torch.uint8)
            output[f"{d}/delta/{n}"] = targets[d][n] - theta_um[n]
            output[f"{d}/score/{n}"] = scores[n].float()
        selected = sum(int(m.sum()) for m in masks.values())
        summary[kind] = {"selected": selected, "total": sum(m.numel() for m in masks.values()),
                         "by_weight": {n: int(m.sum()) for n, m in masks.items() if m.any()}}
        tracking.log_metrics(ctx.mlflow, ctx.run_id, {f"masks/selected_{kind}": selected}, step=0)
    tracking.log_json(ctx.mlflow, ctx.run_id, summary, "masks.json", "stage")
    ctx.save("masks", output)
    return {}


def stage_classifier(ctx: StageContext) -> dict[str, float]:
    """Step 3: the degradation classifier on degraded inputs; its test accuracy is logged."""
    classifier = DegradationClassifier(ctx.ads.classifier, len(ctx.setting.degradation_kinds))
    ctx.train(ClassifierTraining(classifier), BUDGET.steps(ctx.profile, "classifier"), seed_offset=3000)
    classifier.to(ctx.device).eval()
    correct = total = 0
    with torch.no_grad():
        for task in ctx.setting.tasks:
            label = ctx.setting.degradation_kinds.index(task.degradation.kind)
            for pair in ctx.data.test_pairs(task.name):
                x = torch.from_numpy(np.ascontiguousarray(pair.degraded.transpose(2, 0, 1)))[None].to(ctx.device)
                correct += int(classifier(x).argmax(-1).item() == label)
                total += 1
    metrics = {"classifier/test_accuracy": correct / total}
    tracking.log_metrics(ctx.mlflow, ctx.run_id, metrics, step=ctx.profile.steps)
    ctx.save("classifier", classifier.state_dict())
    return metrics


def build_ads(ctx: StageContext) -> NAFNetADS:
    """CNN-ADS from the outputs of stages 1-3: theta_um, masks with theta_d - theta_um, the classifier."""
    model = NAFNetADS(ctx.ads)
    missing, unexpected = model.host.load_state_dict(ctx.artifact("unified"), strict=False)
    if unexpected or any("ads_" not in k for k in missing):
        raise ValueError(f"the unified model does not fit the ADS host: missing {missing}, unexpected {unexpected}")
    stage2 = ctx.artifact("masks")
    kinds = ctx.ads.degradation_types
    names = list(model.kernel_weights())
    masks = [{n: stage2[f"{d}/mask/{n}"].bool() for n in names} for d in range(kinds)]
    # The added kernels start at theta_d - theta_um on the selected filters, so a confident
    # classifier first reproduces the target model there (our initialisation; the slides give none).
    deltas = [{n: stage2[f"{d}/delta/{n}"] for n in names} for d in range(kinds)]
    model.set_masks(masks, deltas)
    model.classifier.load_state_dict(ctx.artifact("classifier"))
    for p in [*model.host.parameters(), *model.classifier.parameters()]:
        p.requires_grad_(False)
    for p in model.added_parameters():
        p.requires_grad_(True)
    return model


def stage_ads(ctx: StageContext) -> dict[str, float]:
    """Step 4: CNN-ADS; only the added kernels train; evaluated like any leaderboard model."""
    model = build_ads(ctx)
    ctx.train(model, BUDGET.steps(ctx.profile, "ads"))
    metrics = ctx.evaluate_and_log(model)
    ctx.save("ads", model.state_dict())
    return metrics


STAGE_FUNCTIONS: dict[str, Callable[[StageContext], dict[str, float]]] = {
    "unified": stage_unified, "masks": stage_masks, "classifier": stage_classifier, "ads": stage_ads}


def run_stage(config: dict[str, Any]) -> None:
    """Ray Tune trainable: run stage `config["stage"]` and report its metrics with phase "done"."""
    from ray import tune

    torch.set_num_threads(config["threads"])
    ctx = StageContext(config)
    torch.manual_seed(ctx.run.seed)
    np.random.seed(ctx.run.seed)
    print(f"[ads] stage '{config['stage']}' started", flush=True)
    metrics = STAGE_FUNCTIONS[config["stage"]](ctx)
    tune.report({**metrics, "phase": "done"})


