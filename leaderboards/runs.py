"""A leaderboard of reproduced results: one row per model, from FINISHED MLflow runs only.

Crashed, killed or still-running runs never appear: only runs whose status is FINISHED (set by
the harness after a successful evaluation) are read.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

PICKS = ("best", "latest")


def _finished_runs(client: MlflowClient, setting: str) -> list[Any]:
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


def leaderboard(
    setting: str,
    tracking_uri: str,
    tasks: list[str],
    version: int,
    pick: str = "best",
    profile: str | None = None,
) -> pd.DataFrame:
    """Rows per (model, variant) of setting `setting` at `version`, sorted by average PSNR.

    `pick` chooses which run stands for a model: the one with the best average PSNR, or the
    latest. Columns: rank, model, variant, pick, runs, psnr/avg, ssim/avg, psnr/<task>,
    ssim/<task> for every task, profile, run_id, data_fingerprint.
    """
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got '{pick}'")
    rows = []
    for run in _finished_runs(MlflowClient(tracking_uri), setting):
        tags, metrics = run.data.tags, run.data.metrics
        if tags.get("setting_version") != str(version) or (profile and tags.get("profile") != profile):
            continue
        if tags.get("dedicated_level") or tags.get("role"):  # per-level baselines and sweep parents
            continue
        row = {"model": tags.get("model"), "variant": tags.get("variant"), "profile": tags.get("profile"),
               "run_id": run.info.run_id, "start_time": run.info.start_time,
               "data_fingerprint": tags.get("data_fingerprint")}
        for name in ["avg", *tasks]:
            for metric in ("psnr", "ssim"):
                row[f"{metric}/{name}"] = metrics.get(f"{metric}/{name}", math.nan)
        rows.append(row)
    columns = ["rank", "model", "variant", "pick", "runs", "psnr/avg", "ssim/avg"]
    columns += [f"{m}/{t}" for t in tasks for m in ("psnr", "ssim")] + ["profile", "run_id", "data_fingerprint"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    order = "psnr/avg" if pick == "best" else "start_time"
    frame = frame.sort_values(order, ascending=False)
    counts = frame.groupby(["model", "variant"]).size().rename("runs")
    board = frame.drop_duplicates(["model", "variant"]).join(counts, on=["model", "variant"])
    board = board.sort_values("psnr/avg", ascending=False).reset_index(drop=True)
    board["pick"] = pick
    board["rank"] = range(1, len(board) + 1)
    return board[columns]


def leaderboard_records(board: pd.DataFrame, tasks: list[str]) -> list[dict[str, Any]]:
    """The leaderboard as JSON-ready rows with per-task {psnr, ssim} dictionaries."""
    records = []
    for row in board.to_dict("records"):
        records.append({
            "rank": int(row["rank"]), "model": row["model"], "variant": row["variant"], "pick": row["pick"],
            "runs": int(row["runs"]), "profile": row["profile"], "run_id": row["run_id"],
            "data_fingerprint": row["data_fingerprint"],
            "average": {"psnr": row["psnr/avg"], "ssim": row["ssim/avg"]},
            "tasks": {t: {"psnr": row[f"psnr/{t}"], "ssim": row[f"ssim/{t}"]} for t in tasks},
        })
    return records
