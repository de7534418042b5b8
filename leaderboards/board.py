"""A setting's leaderboard: reproduced runs (ranked, with bootstrap intervals) beside the papers' numbers.

The two sources are never ranked together: reproduced rows are ranked within their ranking (one
per test-set fingerprint), reported rows keep their table order and cite their table. For a model
that has both, `differences` holds reproduced minus reported per task, flagged as comparable only
for a paper-size model scored on real data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Collection

import pandas as pd

from leaderboards.bootstrap import PerImage, seed_intervals, seeded_difference
from leaderboards.seeds import fold_seeds, mean_per_image, seed_rows
from leaderboards.reported import METRICS, reported_rows, reported_settings, reported_tasks
from leaderboards.views import RANK_CHANGE, rank_changes, rescore_protocol, resolve_view, view_per_image
from leaderboards.readers import open_reader
from leaderboards.runs import EMBEDDED, OUTPUTS, RELEASED, TRAINED, pick_runs, run_table

SOURCES = ("all", "reported", "reproduced")


@dataclass
class Board:
    """Everything one leaderboard shows."""

    setting: str
    version: int | None  # None for a setting only the papers report on (not registered)
    tasks: list[str]
    source: str
    pick: str
    reproduced: pd.DataFrame
    reported: pd.DataFrame
    differences: pd.DataFrame
    per_image: dict[str, PerImage] = field(default_factory=dict)  # run id -> per-image metrics
    view: str = "rgb"  # the protocol view ranked on (leaderboards/views.py)
    missing_view: str = ""  # the command that adds the view, when finished runs exist but none holds it
    seed_per_image: dict[str, list[PerImage]] = field(default_factory=dict)  # row run id -> each seed's per-image metrics
    seed_rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per seed of the seeded entries shown


def setting_tasks(name: str) -> tuple[list[str], int | None]:
    """Task names and version of a registered setting, or the reported tasks of a setting only papers report on."""
    from harness.public import SETTINGS
    from zoo.registry import UnknownNameError

    if name in SETTINGS:
        setting = SETTINGS.get(name)
        return setting.task_names, setting.version
    if name in reported_settings():
        return reported_tasks(name), None
    raise UnknownNameError("setting", name, sorted(set(SETTINGS.names()) | set(reported_settings())))


def _with_intervals(board: pd.DataFrame, tasks: list[str], per_image: dict[str, list[PerImage]]) -> pd.DataFrame:
    """Adds <metric>/<task>/ci_low|ci_high columns from each entry's per-image metrics (one per seed):
    over test images for one seed, over seeds and then test images for several."""
    board = board.copy()
    for metric in METRICS:
        for name in ["avg", *tasks]:
            board[f"{metric}/{name}/ci_low"] = math.nan
            board[f"{metric}/{name}/ci_high"] = math.nan
    board["images"] = math.nan
    for i, run_id in board["run_id"].items():
        scores = per_image.get(run_id)
        if scores is None:
            continue
        board.loc[i, "images"] = min((len(scores[0][t]) for t in tasks if t in scores[0]), default=math.nan)
        for metric in METRICS:
            for name, interval in seed_intervals(scores, tasks, metric).items():
                board.loc[i, f"{metric}/{name}/ci_low"] = interval.low
                board.loc[i, f"{metric}/{name}/ci_high"] = interval.high
    return board


def _with_leads(board: pd.DataFrame, tasks: list[str], per_image: dict[str, list[PerImage]]) -> pd.DataFrame:
    """Adds the paired-bootstrap lead in average PSNR of each row over the next row of its ranking; with
    seeds on either side it is clear only when the seed-level interval excludes 0 too."""
    board = board.copy()
    for column in ("lead/psnr", "lead/ci_low", "lead/ci_high", "lead/seeds_ci_low", "lead/seeds_ci_high"):
        board[column] = math.nan
    board["lead/over"] = None
    board["lead/clear"] = None
    for _, group in board.groupby("ranking", sort=False):
        ids = list(group.index)
        for upper, lower in zip(ids, ids[1:]):
            first, second = per_image.get(board.at[upper, "run_id"]), per_image.get(board.at[lower, "run_id"])
            if first is None or second is None:
                continue
            difference = seeded_difference(first, second, tasks)
            if difference is None:
                continue
            interval = difference.images
            board.loc[upper, ["lead/psnr", "lead/ci_low", "lead/ci_high"]] = [interval.value, interval.low, interval.high]
            if difference.seeds is not None:
                board.loc[upper, ["lead/seeds_ci_low", "lead/seeds_ci_high"]] = [difference.seeds.low, difference.seeds.high]
            board.at[upper, "lead/over"] = board.at[lower, "model"]
            board.at[upper, "lead/clear"] = difference.clear()
    return board


def _caveat(row: dict[str, Any]) -> str:
    """Why a reproduced row is not comparable with a paper's number ('' when it is).

    Released weights and restored images are the authors' own configuration, so only their test data can
    disqualify them.
    """
    reasons = []
    if row["data_source"] == EMBEDDED:
        reasons.append("scored on the embedded synthetic suite, not the paper's test sets")
    if row.get("entry") not in (RELEASED, OUTPUTS) and row["variant"] != "paper":
        reasons.append(f"variant '{row['variant']}', not the paper's configuration")
    return "; ".join(reasons)


def differences(reproduced: pd.DataFrame, reported: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Reproduced minus reported, per task and on average, for every model that has both.

    The interval columns shift the reproduced row's bootstrap interval by the reported value.
    """
    rows = []
    for run in reproduced.to_dict("records"):
        for paper in reported[reported["model"] == run["model"]].to_dict("records"):
            caveat = _caveat(run)
            row = {"model": run["model"], "variant": run["variant"], "entry": run.get("entry", TRAINED),
                   "ranking": run["ranking"],
                   "profile": run["profile"], "data_source": run["data_source"], "run_id": run["run_id"],
                   "citation": paper["citation"], "method": paper["method"], "comparable": not caveat,
                   "caveat": caveat}
            for metric in METRICS:
                for name in ["avg", *tasks]:
                    column = f"{metric}/{name}"
                    reported_value = paper.get(column, math.nan)
                    row[column] = run[column] - reported_value
                    for end in ("ci_low", "ci_high"):
                        row[f"{column}/{end}"] = run.get(f"{column}/{end}", math.nan) - reported_value
            rows.append(row)
    return pd.DataFrame(rows)


def _as_set(value: str | Collection[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def build_board(setting: str, tracking_uri: str | None, source: str = "all", pick: str = "best",
                profile: str | Collection[str] | None = None,
                data_source: str | Collection[str] | None = None, view: str | None = None) -> Board:
    """The leaderboard of `setting` from the MLflow store at `tracking_uri` (None: none) and the reported tables.

    `source` is all, reported or reproduced; `profile` keeps only runs of that profile (or those
    profiles); `data_source` keeps only runs of those data sources ('embedded', a data root, or
    'real' for every data root). The filters apply before a run is picked for its model.
    `view` (rgb, y or matlab; default: the setting's own protocol) chooses the scores ranked on.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got '{source}'")
    tasks, version = setting_tasks(setting)
    shown = resolve_view(setting, view)
    reported = reported_rows(setting if source != "reproduced" else "", tasks)
    per_image: dict[str, PerImage] = {}
    runs = []
    if source != "reported" and tracking_uri is not None:
        reader = open_reader(tracking_uri)
        runs = reader.finished_runs(setting)
    frame = run_table(runs, tasks, version, view=shown.prefix)
    unfolded, frame = frame, fold_seeds(frame)
    profiles, sources = _as_set(profile), _as_set(data_source)
    if profiles is not None and not frame.empty:
        frame = frame[frame["profile"].isin(profiles)]
    if sources is not None and not frame.empty:
        real = frame["data_source"] != EMBEDDED
        frame = frame[frame["data_source"].isin(sources) | (real & ("real" in sources))]
    reproduced = pick_runs(frame, tasks, pick)
    missing = ""
    if reproduced.empty and not frame.empty and shown.prefix:  # runs there, none scored in this view yet
        missing = f"harness rescore --setting {setting} --protocol {rescore_protocol(setting, shown.name)}"
    reproduced[RANK_CHANGE] = rank_changes(reproduced, shown)
    seeds: dict[str, list[PerImage]] = {}
    for row_id, children in zip(reproduced["run_id"], reproduced["seed_runs"]):
        scores = [view_per_image(reader.per_image(child), shown.prefix) for child in children]
        if scores and all(s is not None for s in scores):
            seeds[row_id] = scores
    per_image = {r: mean_per_image(s) for r, s in seeds.items()}
    reproduced = _with_leads(_with_intervals(reproduced, tasks, seeds), tasks, seeds)
    return Board(setting, version, tasks, source, pick, reproduced, reported,
                 differences(reproduced, reported, tasks), per_image, shown.name, missing, seeds,
                 seed_rows(unfolded, reproduced))
