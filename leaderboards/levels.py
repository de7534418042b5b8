"""The leaderboard of a continuous setting: PSNR against level, one model beside dedicated ones.

HyperRes Tab. 1 shows, per noise level, the dedicated "Baseline" (one network trained at that
level), "Ours" (one network for all levels) and their "Distance". This view rebuilds that
table from FINISHED MLflow runs: for each model, its run that stands for it (best or latest
average PSNR) and, per level, the best dedicated run trained at that level (tag
`dedicated_level`, written by `harness submit --dedicated`).
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from leaderboards.readers import RunData, RunInfo, RunRecord, open_reader
from leaderboards.runs import PICKS, RELEASED, entry_of


def level_board(
    setting: str,
    tracking_uri: str,
    levels: dict[str, float],
    trained_range: tuple[float, float] | None,
    version: int,
    pick: str = "best",
    profile: str | None = None,
) -> dict[str, Any]:
    """Per-level rows (level, task, model PSNR/SSIM, dedicated PSNR/SSIM, distance) and summaries.

    `levels` maps task names to levels. Distance = dedicated PSNR - model PSNR, as in HyperRes
    Tab. 1 (positive: the single network is behind the dedicated one).
    """
    if pick not in PICKS:
        raise ValueError(f"pick must be one of {PICKS}, got '{pick}'")
    models: dict[tuple[str, str], list[Any]] = {}
    dedicated: dict[tuple[str, str, float], list[Any]] = {}
    for run in fold_seed_runs(open_reader(tracking_uri).finished_runs(setting)):
        tags = run.data.tags
        if tags.get("setting_version") != str(version) or (profile and tags.get("profile") != profile):
            continue
        if tags.get("role") or (tags.get("sweep_parent") and tags.get("sweep_best") != "true"):
            continue
        key = (tags.get("model"), tags.get("variant"))
        if tags.get("dedicated_level"):
            dedicated.setdefault((*key, float(tags["dedicated_level"])), []).append(run)
        elif "psnr/avg" in run.data.metrics:
            models.setdefault(key, []).append(run)

    def chosen(runs: list[Any], metric: str) -> Any:
        if pick == "latest":
            return max(runs, key=lambda r: r.info.start_time)
        return max(runs, key=lambda r: r.data.metrics.get(metric, -math.inf))

    boards = []
    for (model, variant), runs in sorted(models.items()):
        run = chosen(runs, "psnr/avg")
        rows = []
        for task, level in sorted(levels.items(), key=lambda kv: kv[1]):
            row = {"level": level, "task": task,
                   "psnr": run.data.metrics.get(f"psnr/{task}"), "ssim": run.data.metrics.get(f"ssim/{task}"),
                   "level_error": run.data.metrics.get(f"level_error/{task}"),
                   "dedicated_psnr": None, "dedicated_ssim": None, "distance": None, "dedicated_run_id": None}
            candidates = dedicated.get((model, variant, level), [])
            if candidates:
                best = chosen(candidates, f"psnr/{task}")
                row.update(dedicated_psnr=best.data.metrics.get(f"psnr/{task}"),
                           dedicated_ssim=best.data.metrics.get(f"ssim/{task}"), dedicated_run_id=best.info.run_id)
                if row["psnr"] is not None and row["dedicated_psnr"] is not None:
                    row["distance"] = row["dedicated_psnr"] - row["psnr"]
            rows.append(row)
        frame = pd.DataFrame(rows)
        inside = frame.dropna(subset=["distance"])
        if trained_range is not None:
            inside = inside[(inside.level >= trained_range[0]) & (inside.level <= trained_range[1])]
        boards.append({
            "model": model, "variant": variant, "entry": entry_of(run.data.tags), "run_id": run.info.run_id, "pick": pick,
            "profile": run.data.tags.get("profile"), "data_source": run.data.tags.get("data_source"),
            "blind": run.data.tags.get("blind") == "true", "seeds": int(run.data.tags.get("seeds", 1)),
            "average_psnr": run.data.metrics.get("psnr/avg"),
            "average_distance_in_trained_range": float(inside.distance.mean()) if len(inside) else None,
            "levels_with_dedicated": int(frame.distance.notna().sum()),
            "rows": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                     for r in frame.to_dict("records")],
        })
    orphan_levels = sorted({lv for (m, v, lv) in dedicated if (m, v) not in models})
    return {"setting": setting, "version": version, "kind": "levels", "trained_range": trained_range,
            "boards": boards, "dedicated_without_model_run": orphan_levels}


def fold_seed_runs(runs: list[Any]) -> list[Any]:
    """The runs with the seeds of each `submit --seeds` entry folded into one: metrics averaged over the seeds
    (keys every seed has), run id the entry's parent, tag `seeds` their number (as leaderboards/seeds.py does)."""
    single, seeded = [], {}
    for run in runs:
        parent = run.data.tags.get("seed_parent")
        if parent:
            seeded.setdefault(parent, []).append(run)
        else:
            single.append(run)
    for parent, children in seeded.items():
        keys = set.intersection(*(set(c.data.metrics) for c in children))
        metrics = {k: sum(c.data.metrics[k] for c in children) / len(children) for k in keys}
        tags = {k: v for k, v in children[0].data.tags.items() if k != "seed"}
        tags["seeds"] = str(len(children))
        first = children[0].info
        info = RunInfo(parent, first.run_name, first.experiment_id, max(c.info.start_time or 0 for c in children),
                       first.status, None)
        single.append(RunRecord(info, RunData(tags, dict(children[0].data.params), metrics)))
    return single


def level_board_table(board: dict[str, Any]) -> str:
    """A plain-text rendering: one block per model, one line per level."""
    lines = [f"Leaderboard {board['setting']} v{board['version']} (PSNR dB against level; "
             f"distance = dedicated - single network, HyperRes Tab. 1)"]
    if not board["boards"]:
        lines.append("  no finished runs yet")
    for entry in board["boards"]:
        distance = entry["average_distance_in_trained_range"]
        released = ", released weights" if entry.get("entry") == RELEASED else ""
        lines.append(f"\n{entry['model']} ({entry['variant']}{released}, {entry['pick']} run {entry['run_id'][:8]}, "
                     f"profile {entry['profile']}, data {entry['data_source']}{', blind' if entry['blind'] else ''}"
                     f"{'' if entry.get('seeds', 1) == 1 else ', mean of ' + str(entry['seeds']) + ' seeds'}): "
                     f"average PSNR {entry['average_psnr']:.2f}; average distance in trained range "
                     + ("n/a (no dedicated runs)" if distance is None else f"{distance:+.3f} dB"))
        frame = pd.DataFrame(entry["rows"])[["level", "psnr", "dedicated_psnr", "distance", "ssim", "level_error"]]
        lines.append(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    return "\n".join(lines)
