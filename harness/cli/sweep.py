"""`harness sweep`: a Ray Tune hyperparameter search (or its resumption), then the leaderboard."""
from __future__ import annotations

import argparse
import dataclasses

from harness.cli.common import (accumulate_option, add_model_file, add_speed_options, check_precision_option,
                                load_plugins, metric_names, model_names,
                                parse_options, print_board, profile_names, setting_names)
from harness.cli.registry import command, complete


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("--model", help="a name from `harness list models` (required unless --resume)"),
             model_names)
    complete(p.add_argument("--setting", help="a name from `harness list settings` (required unless --resume)"),
             setting_names)
    p.add_argument("--resume", metavar="PARENT_RUN_ID", help="continue an interrupted sweep from its checkpoints")
    add_model_file(p)
    p.add_argument("--space", action="append", default=[], metavar="KEY=SPEC",
                   help="search-space axis, e.g. lr=loguniform:1e-4:3e-3, model.width=choice:8,16,24, "
                        "model.width=grid:8,16, lr=0.001 (overrides the model's default space)")
    p.add_argument("--space-file", help="YAML file of KEY: value or KEY: {kind: ..., values: [...]}")
    p.add_argument("--no-default-space", action="store_true", help="start from an empty space, not the model's default")
    p.add_argument("--num-samples", type=int, default=4, help="trials sampled from the space (times each grid axis)")
    p.add_argument("--scheduler", default="asha", help="asha (default; stops poor trials early) | pbt | fifo")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs of each trial (split among its workers)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs of each trial; fractions share a GPU, above 1 runs one data-parallel worker per GPU")
    p.add_argument("--workers-per-trial", type=int,
                   help="data-parallel Ray Train workers per trial (gloo on CPU, NCCL on GPU)")
    p.add_argument("--variant", default="tiny", help="paper | tiny (default: tiny)")
    complete(p.add_argument("--profile", default="default", help="training budget from `harness list profiles`"),
             profile_names)
    p.add_argument("--steps", type=int, help="override the profile's number of steps")
    p.add_argument("--accumulate", type=int, help="split each step's batch into N micro-batches whose gradients "
                   "add up before one optimiser step (one gradient sync when data-parallel); less memory, same step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="fixed model option")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim")
    p.add_argument("--no-save-outputs", dest="save_outputs", action="store_false",
                   help="do not keep the restored test images (outputs/<task>/<image>.png; kept by default)")
    p.add_argument("--efficiency-size", type=int, default=128, help="input side of the efficiency columns (0: skip)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    p.add_argument("--address", help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a crashed trial from its last checkpoint")
    add_speed_options(p)


@command("sweep", "search hyperparameters with Ray Tune (ASHA/PBT), one MLflow child run per trial", _arguments)
def run(args: argparse.Namespace) -> int:
    """Search hyperparameters with Ray Tune: an MLflow parent run, one child run per trial."""
    from harness.runs.submit import ClusterOptions
    from harness.runs.sweep import SweepConfig, build_space, resume_sweep, sweep

    modules, py_modules = load_plugins(args.model_file)  # a bad plug-in file stops here, before Ray or MLflow
    cluster = ClusterOptions(address=args.address, cpus=args.cpus, max_failures=args.max_failures,
                             py_modules=py_modules)
    if args.max_failures < 0:
        raise ValueError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.resume:
        result = resume_sweep(args.resume, cluster, args.tracking_uri)
    else:
        if not args.model or not args.setting:
            raise ValueError("harness sweep needs --model and --setting (or --resume PARENT_RUN_ID)")
        from harness.runs.config import RunConfig

        run_config = RunConfig(model=args.model, setting=args.setting, variant=args.variant, profile=args.profile,
                               seed=args.seed, steps=args.steps, data_root=args.data_root,
                               model_options=parse_options(args.option), metrics=tuple(metric_names(args.metrics)),
                               efficiency_size=args.efficiency_size, save_outputs=args.save_outputs,
                           profile_options=accumulate_option(args.accumulate))
        run_config = dataclasses.replace(run_config, plugin_modules=modules, precision=args.precision,
                                         compile=args.compile)
        check_precision_option(args.precision, args.gpus_per_trial)
        space = build_space(args.model, args.space, args.space_file, defaults=not args.no_default_space)
        config = SweepConfig(run=run_config, space=space, num_samples=args.num_samples, scheduler=args.scheduler,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             workers_per_trial=args.workers_per_trial)
        result = sweep(config, cluster, args.tracking_uri)
    print(f"\nSweep {result.parent_run_id} finished in {result.tracking_uri}; best trial: run {result.best_run_id}")
    for run_id, trial in sorted(result.trials.items(), key=lambda item: item[1]["trial_id"] or ""):
        value = trial["metrics"].get("val/psnr")
        shown = f"val/psnr {value:.3f}" if value is not None else ""
        print(f"  {trial['trial_id']}  {run_id}  {trial['status']:<8} node {str(trial['node_id'])[:12]}  {shown}")
    from harness.runs import tracking

    setting = tracking.client(result.tracking_uri).get_run(result.parent_run_id).data.tags["setting"]
    print()
    print_board(setting, result.tracking_uri, "table")
    return 0
