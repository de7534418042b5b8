"""Seeded entries on the leaderboard: the runs of one `harness submit --seeds` fold into one row.

Each seed is its own FINISHED MLflow run (a child, tag `seed_parent` = the parent run's id; see
harness/runs/seeds.py). The entry's row holds the mean over its seeds of every score, `seeds` (their
number) and `seed_runs` (the children's ids, by seed); its `run_id` is the parent run's.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from leaderboards.bootstrap import PerImage

SCORE_PREFIXES = ("psnr/", "ssim/")


def _mean_views(views: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per view and column, the mean over seeds (views every seed has only)."""
    shared = set.intersection(*(set(v) for v in views)) if views else set()
    return {p: {k: float(np.mean([v[p][k] for v in views])) for k in views[0][p]} for p in sorted(shared)}


def fold_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (leaderboards.runs.run_table rows) with the seeds of each seeded entry folded into one row."""
    if frame.empty or "seed_parent" not in frame or frame["seed_parent"].isna().all():
        return frame
    single = frame[frame["seed_parent"].isna()]
    rows = []
    for parent, group in frame[frame["seed_parent"].notna()].groupby("seed_parent", sort=False):
        group = group.assign(_seed=pd.to_numeric(group["seed"], errors="coerce")).sort_values("_seed")
        row: dict[str, Any] = group.iloc[0].drop("_seed").to_dict()
        for column in group.columns:
            if column.startswith(SCORE_PREFIXES):
                row[column] = float(group[column].mean())  # NaN when a seed lacks it: not ranked then
        row.update(run_id=parent, run_name=f"{row['model']}-{row['variant']}-{len(group)} seeds",
                   start_time=group["start_time"].max(), seeds=len(group), seed_runs=list(group["run_id"]),
                   seed=",".join(str(s) for s in group["seed"]), views=_mean_views(list(group["views"])))
        rows.append(row)
    return pd.concat([single, pd.DataFrame(rows)], ignore_index=True)


def seed_rows(frame: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """The unfolded rows (one per seed) of every seeded entry on `board`, for `harness leaderboard --show-seeds`."""
    parents = set(board.loc[board["seeds"] > 1, "run_id"]) if not board.empty else set()
    if frame.empty or not parents:
        return frame.iloc[0:0]
    rows = frame[frame["seed_parent"].isin(parents)].copy()
    rows["_seed"] = pd.to_numeric(rows["seed"], errors="coerce")
    return rows.sort_values(["seed_parent", "_seed"]).drop(columns="_seed").reset_index(drop=True)


def mean_per_image(seeds: list[PerImage]) -> PerImage:
    """Per task, image and metric, the mean over seeds (what the entry's row shows per image)."""
    if len(seeds) == 1:
        return seeds[0]
    out: PerImage = {}
    for task, images in seeds[0].items():
        if any(task not in s for s in seeds):
            continue
        out[task] = {}
        for name, metrics in images.items():
            if any(name not in s[task] for s in seeds):
                continue
            out[task][name] = {m: float(np.mean([s[task][name].get(m, math.nan) for s in seeds])) for m in metrics}
    return out
