"""A leaderboard of reproduced results: one row per model, from FINISHED MLflow runs only.

Crashed, killed or still-running runs never appear: only runs whose status is FINISHED (set by
the harness after a successful evaluation) are read. Of a sweep (`harness sweep`) only the trial
chosen by validation PSNR (tag `sweep_best`) appears, like a submitted run. Runs are ranked only
against runs scored on the same test images: one ranking per data fingerprint, so runs on the
embedded synthetic suite are never ranked together with runs on real data. The authors' released
weights (`harness evaluate`, tag `entry=released-weights`) and restored-image entries
(`harness evaluate --outputs`, tag `entry=outputs`) are ranked with the runs trained here, marked in
the `entry` column; runs of plug-in models (`--model-file` or an entry point, tag `plugin`) are marked
`plugin` there.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from leaderboards.efficiency import run_efficiency

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PICKS = ("best", "latest")
EMBEDDED = "embedded"
TRAINED = "trained"  # the entry of a run the harness trained (no `entry` tag)
RELEASED = "released-weights"  # the `entry` tag of `harness evaluate`: the authors' released weights, not trained here
OUTPUTS = "outputs"  # the `entry` tag of `harness evaluate --outputs`: a method's restored images, no model run here
LOGGED_MODEL = "logged-model"  # the `entry` tag of `harness evaluate --weights runs:/...|models:/...`
PLUGIN = "plugin"  # a run the harness trained of a plug-in model (tag `plugin`: a --model-file or an entry point)


def entry_of(tags: dict[str, str]) -> str:
    """What a run's row stands for: 'trained' (by the harness), 'plugin' (trained, a plug-in model),
    'released-weights' or 'outputs' (restored images)."""
    return tags.get("entry") or (PLUGIN if tags.get("plugin") else TRAINED)


def finished_runs(client: "MlflowClient", setting: str) -> list[Any]:
    """Every FINISHED run of `setting` in the store of `client` (all pages)."""
    experiment = client.get_experiment_by_name(f"restoration-bench/{setting}")
    if experiment is None:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status = 'FINISHED' and tags.setting = '{setting}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def ranking_label(data_source: str | None, fingerprint: str | None) -> str:
    """The name of the ranking a run belongs to: its data source and test-set fingerprint."""
    short = (fingerprint or "unknown")[:8]
    if data_source == EMBEDDED:
        return f"embedded synthetic suite ({short})"
    return f"real data {data_source} ({short})"


def run_views(metrics: dict[str, float], tasks: list[str]) -> dict[str, dict[str, float]]:
    """Metric prefix ('' the setting's own view, 'y/', 'rgb/', 'matlab/', ...) -> that view's psnr/ssim columns."""
    prefixes = [k[: -len("psnr/avg")] for k in metrics if k.endswith("psnr/avg")]
    return {p: {f"{m}/{n}": metrics.get(f"{p}{m}/{n}", math.nan) for n in ["avg", *tasks] for m in ("psnr", "ssim")}
            for p in sorted(prefixes)}


def run_table(runs: list[Any], tasks: list[str], version: int | None, profile: str | None = None,
              view: str = "") -> pd.DataFrame:
    """One row per run of setting version `version` (and `profile`, when given): tags, metrics, efficiency.

    The psnr/ssim columns are those of the view whose metrics carry the prefix `view` ('' : the
    setting's own protocol); `views` holds every view the run has.
    """
    rows = []
    listed = {run.info.run_id for run in runs}
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("entry") == LOGGED_MODEL and tags.get("logged_model.source_run") in listed:
            continue  # a re-evaluation of a trained run on its own setting: that run already stands for it
        if version is not None and tags.get("setting_version") != str(version):
            continue
        if profile and tags.get("profile") != profile:
            continue
        if tags.get("dedicated_level") or tags.get("role"):  # per-level baselines and sweep parents
            continue
        if tags.get("sweep_parent") and tags.get("sweep_best") != "true":  # a sweep stands by its best trial
            continue
        row = {"model": tags.get("model"), "variant": tags.get("variant"), "entry": entry_of(tags),
               "profile": tags.get("profile"), "budget": budget_label(tags, run.data.params),
               "precision": tags.get("precision") or "fp32",  # runs from before --precision trained in float32
               "data_source": tags.get("data_source"), "data_fingerprint": tags.get("data_fingerprint"),
               "ranking": ranking_label(tags.get("data_source"), tags.get("data_fingerprint")),
               "run_id": run.info.run_id, "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
               "start_time": run.info.start_time, "seed": tags.get("seed"),
               # a seed of a `submit --seeds` entry (harness/runs/seeds.py); leaderboards/seeds.py folds them into one row
               "seed_parent": tags.get("seed_parent"), "seeds": 1, "seed_runs": [run.info.run_id]}
        for name in ["avg", *tasks]:
            for metric in ("psnr", "ssim"):
                row[f"{metric}/{name}"] = metrics.get(f"{view}{metric}/{name}", math.nan)
        row["views"] = run_views(metrics, tasks)
        row.update(run_efficiency(row["model"], row["variant"], run.data.params, metrics))
        rows.append(row)
    return pd.DataFrame(rows)


def budget_label(tags: dict[str, str], params: dict[str, str]) -> str:
    """The training budget a run's numbers come from: its `budget` tag (epochs, steps, effective batch),
    or, for runs from before it, the steps and batch of its profile parameters; '-' for untrained entries."""
    if tags.get("budget"):
        return tags["budget"]
    steps, batch = params.get("profile.steps"), params.get("profile.batch_size")
    return f"{int(steps):,} steps x {batch}" if steps and batch else "-"


def board_columns(tasks: list[str]) -> list[str]:
    """Column order of a reproduced leaderboard."""
    columns = ["rank", "model", "variant", "entry", "pick", "runs", "seeds", "ranking", "psnr/avg", "ssim/avg"]
    columns += [f"{m}/{t}" for t in tasks for m in ("psnr", "ssim")]
    return columns + ["params", "params_source", "macs", "macs_input", "latency_ms", "profile", "budget",
                      "precision", "data_source", "run_id", "data_fingerprint", "run_name", "experiment_id", "start_time", "views", "seed_runs"]


def pick_runs(frame: pd.DataFrame, tasks: list[str], pick: str = "best") -> pd.DataFrame:
    """One run per (ranking, model, variant), ranked by average PSNR within each ranking.

    `pick` chooses which run stands for a model: the one with the best average PSNR (the latest
    among equals), or the latest. Rankings on real data come before the embedded suite's.
    """
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got '{pick}'")
    columns = board_columns(tasks)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    keys = ["ranking", "model", "variant"]
    order = ["psnr/avg", "start_time"] if pick == "best" else ["start_time"]  # ties: the latest run
    frame = frame.dropna(subset=["psnr/avg"])  # runs without this view's scores are not ranked in it
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.sort_values(order, ascending=False, kind="stable")
    counts = frame.groupby(keys).size().rename("runs")
    board = frame.drop_duplicates(keys).join(counts, on=keys)
    board["embedded"] = board["data_source"] == EMBEDDED
    board = board.sort_values(["embedded", "ranking", "psnr/avg"], ascending=[True, True, False])
    board["rank"] = board.groupby("ranking").cumcount() + 1
    board["pick"] = pick
    return board[columns].reset_index(drop=True)


def leaderboard(
    setting: str,
    tracking_uri: str,
    tasks: list[str],
    version: int | None,
    pick: str = "best",
    profile: str | None = None,
) -> pd.DataFrame:
    """Reproduced rows of setting `setting` at `version`: one run per model and ranking, ranked by average PSNR.

    Columns: rank, model, variant, entry (trained | released-weights), pick, runs, ranking, psnr/avg, ssim/avg, psnr/<task>,
    ssim/<task> for every task, params, params_source, macs, profile, data_source, run_id,
    data_fingerprint, run_name, experiment_id, start_time.
    """
    from leaderboards.readers import open_reader

    runs = open_reader(tracking_uri).finished_runs(setting)
    return pick_runs(run_table(runs, tasks, version, profile), tasks, pick)


def leaderboard_records(board: pd.DataFrame, tasks: list[str]) -> list[dict[str, Any]]:
    """The leaderboard as JSON-ready rows with per-task {psnr, ssim} dictionaries."""
    records = []
    for row in board.to_dict("records"):
        records.append({
            "rank": int(row["rank"]), "model": row["model"], "variant": row["variant"], "entry": row["entry"],
            "pick": row["pick"],
            "runs": int(row["runs"]), "ranking": row["ranking"], "profile": row["profile"],
            "data_source": row["data_source"], "run_id": row["run_id"], "data_fingerprint": row["data_fingerprint"],
            "average": {"psnr": row["psnr/avg"], "ssim": row["ssim/avg"]},
            "tasks": {t: {"psnr": row[f"psnr/{t}"], "ssim": row[f"ssim/{t}"]} for t in tasks},
        })
    return records
