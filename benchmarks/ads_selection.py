"""ADS' filter-selection comparison (slides, "Comparison studies for selected filter locations") at small scale.

One unified model, one target model per degradation and one degradation classifier are trained
once; then for each selection method (random, encoder, |theta_um - theta_d|, FAIG-SD) the masks
are chosen, CNN-ADS is built and its added kernels trained with the same seed and budget, and
every model is scored on the setting's test images. Runs in-process (no Ray, no MLflow) and
writes benchmarks/results/ads_selection_<setting>_q<q>.json.

    python benchmarks/ads_selection.py --setting rain_blur_noise --steps 120 --q 3
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch

from harness.ads.stages import BUDGET, kind_setting
from harness.data import open_data
from harness.scoring.evaluation import evaluate
from harness.runs.profiles import PROFILES
from harness.settings import get_setting
from harness.runs.training import train
from zoo import model_config
from zoo.ads import (SELECTIONS, ClassifierTraining, DegradationClassifier, NAFNetADS, SelectionInputs,
                     kernel_weights, top_filters)
from zoo.nafnet import NAFNet

METHODS = ("random", "encoder", "weight_diff", "faig")


def _train(model, setting, profile, steps: int, seed: int) -> None:
    profile = dataclasses.replace(profile, steps=steps)
    data = open_data(setting)
    train(model, data.training_set(profile.patch_size, steps * profile.batch_size, seed), profile)


def _batches(setting, profile, count: int, seed: int):
    dataset = open_data(setting).training_set(profile.patch_size, count * profile.batch_size, seed)
    size = profile.batch_size
    return [(torch.stack([dataset[b * size + i]["degraded"] for i in range(size)]),
             torch.stack([dataset[b * size + i]["target"] for i in range(size)])) for b in range(count)]


def main() -> None:
    """Run the comparison and print and write the PSNR per task and method."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="rain_blur_noise")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--steps", type=int, default=120, help="the unified model's steps; other stages as in BUDGET")
    parser.add_argument("--q", type=float, default=3.0)
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    setting = get_setting(args.setting)
    profile = dataclasses.replace(PROFILES.get(args.profile), steps=args.steps)
    kinds = setting.degradation_kinds
    config = model_config("nafnet_ads", args.variant, q=args.q, degradation_types=len(kinds))
    data = open_data(setting)
    results, started = {}, time.monotonic()

    def score(name: str, model) -> None:
        metrics = evaluate(model, setting, data).flat_metrics()
        results[name] = {k: round(v, 3) for k, v in metrics.items() if k.startswith("psnr/")}
        print(f"{name:<12} " + "  ".join(f"{k} {v:.2f}" for k, v in results[name].items()), flush=True)

    unified = NAFNet(config.host)
    _train(unified, setting, profile, BUDGET.steps(profile, "unified"), args.seed)
    score("unified", unified)
    theta_um = {k: v.detach().clone() for k, v in unified.named_parameters()}
    targets, batches = [], []
    for d, kind in enumerate(kinds):
        target = copy.deepcopy(unified)
        _train(target, kind_setting(setting, kind), profile, BUDGET.steps(profile, "target"), args.seed + 1000 + d)
        targets.append({k: v.detach().clone() for k, v in target.named_parameters()})
        batches.append(_batches(kind_setting(setting, kind), profile, BUDGET.faig_batches, args.seed + 2000 + d))
    classifier = DegradationClassifier(config.classifier, len(kinds))
    _train(ClassifierTraining(classifier), setting, profile, BUDGET.steps(profile, "classifier"), args.seed + 3000)
    unified.eval()
    inputs = SelectionInputs(unified, theta_um, targets, batches, config.faig_steps, args.seed)
    names = list(kernel_weights(unified))
    for method in METHODS:
        masks = [top_filters(SELECTIONS.get(method)(inputs, d), args.q) for d in range(len(kinds))]
        model = NAFNetADS(dataclasses.replace(config, selection=method))
        model.host.load_state_dict(unified.state_dict(), strict=False)
        model.set_masks(masks, [{n: targets[d][n] - theta_um[n] for n in names} for d in range(len(kinds))])
        model.classifier.load_state_dict(classifier.state_dict())
        for p in [*model.host.parameters(), *model.classifier.parameters()]:
            p.requires_grad_(False)
        for p in model.added_parameters():  # they live inside the host's convolutions
            p.requires_grad_(True)
        torch.manual_seed(args.seed)
        _train(model, setting, profile, BUDGET.steps(profile, "ads"), args.seed)
        score(method, model)
    record = {"setting": args.setting, "variant": args.variant, "profile": args.profile, "unified_steps": args.steps,
              "budget": dataclasses.asdict(BUDGET), "q": args.q, "seed": args.seed, "psnr": results,
              "seconds": round(time.monotonic() - started, 1)}
    out = Path(__file__).with_name("results") / f"ads_selection_{args.setting}_q{args.q:g}_steps{args.steps}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
