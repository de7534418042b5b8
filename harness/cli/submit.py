"""`harness submit`: train and evaluate one model on one setting (or resume a run), then rank it."""
from __future__ import annotations

import argparse
import dataclasses

from harness.cli.common import (accumulate_option, add_model_file, load_plugins, metric_names, model_names,
                                parse_options, print_board, print_result, profile_names, setting_names)
from harness.cli.registry import command, complete


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("--model", help="a name from `harness list models` (required unless --resume)"),
             model_names)
    complete(p.add_argument("--setting", help="a name from `harness list settings` (required unless --resume)"),
             setting_names)
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted or crashed run from its last checkpoint")
    add_model_file(p)
    p.add_argument("--variant", default="tiny", help="paper | tiny (default: tiny, trains on a CPU)")
    complete(p.add_argument("--profile", default="default", help="training budget from `harness list profiles`"),
             profile_names)
    p.add_argument("--steps", type=int, help="override the profile's number of steps")
    p.add_argument("--accumulate", type=int, help="split each step's batch into N micro-batches whose gradients "
                   "add up before one optimiser step (one gradient sync when data-parallel); less memory, same step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="model configuration override")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    p.add_argument("--address", help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--cpus", type=int, help="CPUs for the trial (default: all local CPUs)")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs for the trial (fractions allowed)")
    p.add_argument("--max-failures", type=int, default=0, help="retries of a crashed trial from its last checkpoint")
    p.add_argument("--blind", action="store_true",
                   help="continuous settings: restore with the model's estimated level, not the true one")
    p.add_argument("--dedicated", action="store_true",
                   help="continuous settings: train one model per level (a Ray Tune grid), the per-level baselines")
    p.add_argument("--levels", help="levels of --dedicated, comma-separated (default: every evaluated level "
                                    "inside the trained range)")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="--dedicated: CPUs of each grid trial")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim, e.g. lpips,niqe,fsim "
                                     "(`harness list metrics`); one without local weights is recorded as missing")
    p.add_argument("--no-save-outputs", dest="save_outputs", action="store_false",
                   help="do not keep the restored test images (outputs/<task>/<image>.png; kept by default)")
    p.add_argument("--efficiency-size", type=int, default=128,
                   help="input side for the measured MACs, latency and memory (default 128; 0: skip)")


@command("submit", "train and evaluate a model on a setting (Ray + MLflow)", _arguments)
def run(args: argparse.Namespace) -> int:
    """Train and evaluate one model on one setting, tracked in MLflow."""
    from harness.runs.config import RunConfig
    from harness.runs.submit import ClusterOptions, resume, submit

    modules, py_modules = load_plugins(args.model_file)  # a bad plug-in file stops here, before Ray or MLflow
    cluster = ClusterOptions(address=args.address, cpus=args.cpus, gpus=args.gpus, max_failures=args.max_failures,
                             py_modules=py_modules)
    if args.resume:
        from harness.ads.pipeline import is_pipeline_run, resume_pipeline
        from harness.runs import tracking

        if is_pipeline_run(args.resume, args.tracking_uri):  # an ADS pipeline resumes stage by stage
            result = resume_pipeline(args.resume, cluster, args.tracking_uri)
        else:
            result = resume(args.resume, cluster, args.tracking_uri)
        setting = tracking.client(result.tracking_uri).get_run(result.run_id).data.tags["setting"]
        print_result(result, setting)
        return 0
    if not args.model or not args.setting:
        raise ValueError("harness submit needs --model and --setting (or --resume RUN_ID)")
    run_config = RunConfig(model=args.model, setting=args.setting, variant=args.variant, profile=args.profile,
                           seed=args.seed, steps=args.steps, data_root=args.data_root,
                           model_options=parse_options(args.option), blind=args.blind,
                           metrics=tuple(metric_names(args.metrics)), efficiency_size=args.efficiency_size, save_outputs=args.save_outputs,
                           profile_options=accumulate_option(args.accumulate))
    run_config = dataclasses.replace(run_config, plugin_modules=modules)
    if args.dedicated or args.levels:
        from harness.runs.dedicated import submit_dedicated
        from harness.runs.store import tracking_uri

        levels = [float(v) for v in args.levels.split(",")] if args.levels else None
        outcomes = submit_dedicated(run_config, levels, cluster, args.tracking_uri, cpus_per_trial=args.cpus_per_trial)
        for level, metrics in sorted(outcomes.items()):
            print(f"  dedicated level {level:g}: " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())
                                                            if not k.endswith("/avg")))
        print()
        print_board(args.setting, tracking_uri(args.tracking_uri), "table")
        return 0
    from zoo.ads import is_pipeline_model

    if is_pipeline_model(run_config.model):  # ADS: four stages, an MLflow parent run with a child per stage
        from harness.ads.pipeline import submit_pipeline

        print_result(submit_pipeline(run_config, cluster, args.tracking_uri), args.setting)
        return 0
    print_result(submit(run_config, cluster, args.tracking_uri), args.setting)
    return 0
