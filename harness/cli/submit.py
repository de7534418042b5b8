"""`harness submit`: train and evaluate one model on one setting (or resume a run), then rank it."""
from __future__ import annotations

import argparse
import dataclasses

from harness.cli.common import (accumulate_option, add_model_file, add_speed_options, check_precision_option,
                                load_plugins, metric_names, model_names,
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
    p.add_argument("--seeds", help="train once per seed, comma-separated distinct seeds (e.g. 0,1,2), as one Ray Tune "
                                   "grid under an MLflow parent run; the leaderboard shows the mean over seeds")
    p.add_argument("--repeats", type=int, metavar="N", help="like --seeds 0,1,...,N-1")
    p.add_argument("--data-root", help="folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="model configuration override")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    p.add_argument("--address", help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--cpus", type=int, help="CPUs for the trial (default: all local CPUs)")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs for the trial (fractions allowed)")
    p.add_argument("--max-failures", type=int, default=0, help="retries of a crashed trial from its last checkpoint")
    p.add_argument("--workers", type=int, help="train the run data-parallel on N Ray Train workers (gloo on CPUs, NCCL "
                   "on GPUs); the effective batch stays the profile's, split N ways (with --resume: continue on N)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs of each data-parallel worker")
    p.add_argument("--dry-run", action="store_true", help="print the plan (recipe, epochs, steps, batches, workers) and "
                   "the expected wall time from a few steps measured here; train nothing")
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
    add_speed_options(p)


@command("submit", "train and evaluate a model on a setting (Ray + MLflow)", _arguments)
def run(args: argparse.Namespace) -> int:
    """Train and evaluate one model on one setting, tracked in MLflow."""
    from harness.runs.config import RunConfig
    from harness.runs.submit import ClusterOptions, resume, submit

    modules, py_modules = load_plugins(args.model_file)  # a bad plug-in file stops here, before Ray or MLflow
    cluster = ClusterOptions(address=args.address, cpus=args.cpus, gpus=args.gpus, max_failures=args.max_failures,
                             py_modules=py_modules, workers=args.workers, gpus_per_worker=args.gpus_per_worker)
    if args.workers is not None and args.workers < 1:  # one line before anything starts
        raise ValueError(f"--workers must be a positive number of data-parallel workers, got {args.workers}")
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
    run_config = dataclasses.replace(run_config, plugin_modules=modules, precision=args.precision,
                                     compile=args.compile)
    check_precision_option(args.precision, max(args.gpus, getattr(args, "gpus_per_worker", 0.0)))
    if cluster.data_parallel() or args.dry_run:
        from harness.runs.submit import check_cluster

        run_config.validate()
        check_cluster(run_config, cluster)  # workers, GPUs and the batch split: one line each, exit 2
    if cluster.data_parallel():
        from zoo.ads import is_pipeline_model

        if args.dedicated or args.levels or args.seeds or args.repeats or is_pipeline_model(run_config.model):
            raise ValueError("--workers and --gpus-per-worker train one run data-parallel; give them without "
                             "--dedicated, --levels, --seeds, --repeats or a pipeline model")
    if args.dry_run:
        from harness.runs.plan import make_plan, plan_text

        print(plan_text(make_plan(run_config, cluster.workers or 1)))
        return 0
    from harness.cli.seeds import parse_seeds

    seeds = parse_seeds(args.seeds, args.repeats)  # bad seeds stop here, before Ray or MLflow
    if seeds is not None and (args.dedicated or args.levels):
        raise ValueError("--seeds/--repeats train one configuration per seed; give them without --dedicated/--levels")
    from zoo.ads import is_pipeline_model

    if (run_config.resolved_profile().epochs is not None and run_config.steps is None
            and (seeds is not None or args.dedicated or args.levels or is_pipeline_model(run_config.model))):
        raise ValueError(f"profile '{run_config.profile}' states its budget in epochs, which one plain run resolves "
                         "from its data; with --seeds, --repeats, --dedicated, --levels or a pipeline model give --steps")
    if seeds is not None:
        from harness.cli.seeds import print_seeds

        return print_seeds(run_config, seeds, cluster, args.tracking_uri)
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
