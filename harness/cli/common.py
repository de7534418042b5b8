"""Helpers several commands share: option parsing and printing a run's result and its leaderboard."""
from __future__ import annotations

import json
from typing import Any

import yaml


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--option KEY=VALUE` pairs as a dict, each value read as YAML (so 32 is an int, [3,5] a list)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got '{pair}'")
        options[key] = yaml.safe_load(value)
    return options


def metric_names(text: str | None) -> list[str]:
    """`--metrics a,b` as canonical metric names, psnr and ssim always first."""
    from harness.scoring.scorers import parse_metrics

    return parse_metrics(text)


def model_names(**_: Any) -> list[str]:
    """Shell completion: the zoo's model names (from the cached `list models` rows)."""
    from harness.cli.listing import model_rows

    return [row["name"] for row in model_rows()]


def setting_names(**_: Any) -> list[str]:
    """Shell completion: the registered settings."""
    from harness.settings import SETTINGS

    return SETTINGS.names()


def profile_names(**_: Any) -> list[str]:
    """Shell completion: the registered training profiles."""
    from harness.runs.profiles import PROFILES

    return PROFILES.names()


def print_board(setting_name: str, uri: str, fmt: str, pick: str = "best", profile: str | None = None,
                source: str = "reproduced", view: str | None = None, show_seeds: bool = False) -> None:
    """Print the leaderboard of a setting (the level board for a continuous one); `show_seeds` adds each seed's row."""
    from harness.settings import SETTINGS, get_setting
    from leaderboards.board import build_board
    from leaderboards.render import board_frame, board_records, board_text, seeds_view

    setting = get_setting(setting_name) if setting_name in SETTINGS or source == "reproduced" else None
    if setting is not None and setting.continuous and source == "reproduced":
        from harness.scoring.views import view_name

        if view not in (None, view_name(setting.protocol)):  # the level board reads the unprefixed metrics only
            raise ValueError(f"the level board of '{setting.name}' ranks on its own view "
                             f"({view_name(setting.protocol)}); --view {view} needs --source all")
        _print_level_board(setting, uri, fmt, pick, profile)
        return
    board = build_board(setting_name, uri, source=source, pick=pick, profile=profile, view=view)
    seeds = seeds_view(board) if show_seeds else None
    if fmt == "json":
        records = board_records(board)
        if seeds is not None:
            records["seed_rows"] = seeds.to_dict("records")
        print(json.dumps(records, indent=2))
    elif fmt == "csv":
        print((board_frame(board) if seeds is None else seeds).to_csv(index=False), end="")
    else:
        print(board_text(board, markdown=fmt == "markdown"), end="")
        if seeds is not None:
            print("\nSeeds of each entry with seeds > 1 (entry run = the row's run):")
            print(seeds.to_string(index=False) if not seeds.empty else "none on this board")


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


def print_result(result, setting: str) -> None:
    """Print a finished run's id, where it is tracked, its metrics, and the setting's leaderboard."""
    print(f"\nFinished: MLflow run {result.run_id} (experiment {result.experiment_id}) in {result.tracking_uri}")
    print(f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}")
    for key in sorted(result.metrics):
        print(f"  {key:<22} {result.metrics[key]:.4f}")
    print()
    print_board(setting, result.tracking_uri, "table")


def accumulate_option(accumulate: int | None) -> dict[str, int]:
    """`--accumulate N` as a training-profile override ({} when not given)."""
    return {} if accumulate is None else {"accumulate": accumulate}


def add_model_file(parser) -> None:
    """The repeatable `--model-file PATH` option: a Python file that registers plug-in models."""
    parser.add_argument("--model-file", action="append", metavar="PATH",
                        help="a Python file that registers models with zoo.register_model (repeatable); "
                             "installed packages plug in through the entry-point group restoration_bench.models")


def load_plugins(model_files: list[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Import `--model-file` files and installed plug-ins: (module names for RunConfig, files for Ray py_modules)."""
    from harness.runs.plugins import load_model_files, staged_modules

    plugins = load_model_files(model_files)
    return tuple(p.module for p in plugins), staged_modules(plugins)


def add_speed_options(parser) -> None:
    """`--precision fp32|bf16|fp16` and `--compile`: autocast and torch.compile (harness/precision.py)."""
    parser.add_argument("--precision", default="fp32",
                        help="fp32 (default) | bf16 (CPU, or an Ampere+ GPU) | fp16 (GPU, with gradient scaling): "
                             "autocast of the model; metrics are always computed in float32")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (falls back to eager, tagged compile.fallback, if it fails)")


def check_precision_option(precision: str, gpus: float) -> None:
    """Refuse, in one line before Ray or MLflow start, a precision the run's device cannot do (exit 2)."""
    from harness.precision import check_precision

    check_precision(precision, "cuda" if gpus and gpus > 0 else "cpu")
