"""Protocol views on the embedded five_deg suite: RGB vs Y PSNR per task, the 8-bit rounding effect,
and what saving the restored images costs (bytes and seconds per run).

Models: identity, and a tiny NAFNet trained briefly (40 steps of the smoke profile's batch and patch:
a couple of CPU minutes; any model, profile and length with --model, --profile, --steps).
Every figure is measured in this process on the CPU (torch's threads: all cores), one pass each.
Run: .venv/bin/python benchmarks/protocol_views.py [--model M] [--profile P] [--steps N]; writes benchmarks/results/protocol_views.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness.data import open_data
from harness.runs import tracking
from harness.runs.profiles import PROFILES
from harness.runs.training import train
from harness.scoring.evaluation import evaluate, restore
from harness.scoring.metrics import score
from harness.settings import get_setting
from zoo import create_model


def float_psnr(model, setting, data) -> dict[str, float]:
    """Mean PSNR per task of the unrounded (float) outputs under the setting's protocol."""
    out = {}
    with torch.no_grad():
        for task in setting.task_names:
            values = []
            for pair in data.test_pairs(task):
                x = torch.from_numpy(pair.degraded.transpose(2, 0, 1).copy())[None]
                y = torch.from_numpy(pair.target.transpose(2, 0, 1).copy())[None]
                values.append(float(score(restore(model, x), y, setting.protocol)["psnr"]))
            out[task] = float(np.mean(values))
    return out


def figures(model, setting, data) -> dict:
    """RGB/Y PSNR per task (8-bit), float PSNR, output bytes, and what the Y view and saving add in seconds."""
    own_only = {"": setting.protocol}
    start = time.perf_counter()
    evaluate(model, setting, data, views=own_only)
    seconds_own = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate(model, setting, data, save_outputs=True)  # what every run does now: both views, images kept
    seconds_views = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        client = tracking.client(f"sqlite:///{tmp}/m.db")
        run_id = client.create_run(client.create_experiment("x", artifact_location=Path(tmp, "a").as_uri())).info.run_id
        start = time.perf_counter()
        size = tracking.log_outputs(client, run_id, {t: r.outputs for t, r in result.tasks.items()})
        seconds_save = time.perf_counter() - start
    flat, floats = result.flat_metrics(), float_psnr(model, setting, data)
    return {
        "rgb_psnr": {t: flat[f"psnr/{t}"] for t in [*setting.task_names, "avg"]},
        "y_psnr": {t: flat[f"y/psnr/{t}"] for t in [*setting.task_names, "avg"]},
        "float_rgb_psnr": floats,
        "rounding_effect_db": {t: flat[f"psnr/{t}"] - floats[t] for t in setting.task_names},
        "outputs_bytes": size, "images": sum(len(r.outputs) for r in result.tasks.values()),
        "seconds_evaluate_own_view": seconds_own, "seconds_evaluate_both_views_keeping_images": seconds_views,
        "seconds_png_and_mlflow": seconds_save,
    }


def overheads(setting, data, repeats: int = 5) -> dict:
    """Median seconds (alternating `repeats` times, so load from other processes hits each alike) of the
    identity model's evaluation under its own view only, under both views keeping the images, and of
    writing those images as PNGs into an MLflow run: the cost a run pays for views and saved outputs."""
    model = create_model("identity")
    own_only = {"": setting.protocol}
    times: dict[str, list[float]] = {"evaluate_own_view": [], "evaluate_both_views_keeping_images": [],
                                     "png_and_mlflow": []}
    with tempfile.TemporaryDirectory() as tmp:
        client = tracking.client(f"sqlite:///{tmp}/m.db")
        experiment = client.create_experiment("x", artifact_location=Path(tmp, "a").as_uri())
        for _ in range(repeats):
            start = time.perf_counter()
            evaluate(model, setting, data, views=own_only)
            times["evaluate_own_view"].append(time.perf_counter() - start)
            start = time.perf_counter()
            result = evaluate(model, setting, data, save_outputs=True)
            times["evaluate_both_views_keeping_images"].append(time.perf_counter() - start)
            run_id = client.create_run(experiment).info.run_id
            start = time.perf_counter()
            tracking.log_outputs(client, run_id, {t: r.outputs for t, r in result.tasks.items()})
            times["png_and_mlflow"].append(time.perf_counter() - start)
    return {f"median_seconds_{k}": float(np.median(v)) for k, v in times.items()} | {"repeats": repeats}


def rank_changes(report: dict[str, dict]) -> dict[str, dict]:
    """Per task and on average: the order of the models under RGB and under Y, and each model's places gained in Y."""
    models = [m for m in report if isinstance(report[m], dict) and "rgb_psnr" in report[m]]
    out = {}
    for task in report[models[0]]["rgb_psnr"]:
        order = {view: sorted(models, key=lambda m: -report[m][f"{view}_psnr"][task]) for view in ("rgb", "y")}
        out[task] = {"rgb_order": order["rgb"], "y_order": order["y"],
                     "y_change": {m: order["rgb"].index(m) - order["y"].index(m) for m in models}}
    return out


def main() -> None:
    """Measure identity and a trained tiny NAFNet; print and store the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="nafnet")
    parser.add_argument("--profile", default="smoke", help="batch, patch and learning rate of the training (steps: --steps)")
    parser.add_argument("--overheads-only", action="store_true",
                        help="measure only the identity model's timing overheads and update them in the JSON")
    args = parser.parse_args()
    torch.manual_seed(0)
    setting = get_setting("five_deg")
    data = open_data(setting)
    path = Path(__file__).with_name("results").joinpath("protocol_views.json")
    if args.overheads_only:
        report = json.loads(path.read_text())
        report["overheads_identity"] = overheads(setting, data)
        print(json.dumps(report["overheads_identity"], indent=2))
        path.write_text(json.dumps(report, indent=2) + "\n")
        return
    report = {"setting": "five_deg (embedded)", "identity": figures(create_model("identity"), setting, data)}
    model = create_model(args.model, "tiny")
    profile = dataclasses.replace(PROFILES.get(args.profile), steps=args.steps)
    start = time.perf_counter()
    train(model, data.training_set(profile.patch_size, profile.steps * profile.batch_size, 0), profile)
    report["seconds_training"] = time.perf_counter() - start
    start = time.perf_counter()
    report[f"{args.model}-tiny ({args.steps} steps, {args.profile} profile)"] = figures(model, setting, data)
    report["rank_changes"] = rank_changes(report)
    report["seconds_trained_model_figures"] = time.perf_counter() - start
    report["overheads_identity"] = overheads(setting, data)
    text = json.dumps(report, indent=2)
    print(text)
    path.write_text(text + "\n")


if __name__ == "__main__":
    main()
