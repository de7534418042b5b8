"""Display tables of a Board for the dashboard: one per reproduced ranking, the reported rows, the differences.

Plain pandas (no Streamlit), so the tests check exactly what the pages show.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from leaderboards.board import Board
from leaderboards.views import moved


def _ci(low: float, high: float, digits: int) -> str:
    if pd.isna(low):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def ranking_tables(board: Board, run_url: Callable[[str, str], str]) -> dict[str, pd.DataFrame]:
    """One table per ranking (test-set fingerprint), rows in rank order, numbers as numbers (sortable)."""
    tables = {}
    for ranking, group in board.reproduced.groupby("ranking", sort=False):
        rows = []
        for row in group.to_dict("records"):
            cells = {"rank": int(row["rank"]), "model": row["model"], "variant": row["variant"],
                     "entry": row["entry"], "profile": row["profile"], "data source": row["data_source"],
                     "runs": int(row["runs"]), "seeds": int(row.get("seeds", 1)),  # > 1: CI over seeds, then images
                     "PSNR avg": row["psnr/avg"], "PSNR avg 95% CI": _ci(row["psnr/avg/ci_low"], row["psnr/avg/ci_high"], 2),
                     "SSIM avg": row["ssim/avg"], "SSIM avg 95% CI": _ci(row["ssim/avg/ci_low"], row["ssim/avg/ci_high"], 4)}
            for task in board.tasks:
                cells[f"PSNR {task}"] = row[f"psnr/{task}"]
                cells[f"PSNR {task} 95% CI"] = _ci(row[f"psnr/{task}/ci_low"], row[f"psnr/{task}/ci_high"], 2)
                cells[f"SSIM {task}"] = row[f"ssim/{task}"]
            cells["params (M)"] = None if pd.isna(row["params"]) else row["params"] / 1e6
            cells["MACs (G)"] = None if pd.isna(row["macs"]) else row["macs"] / 1e9
            cells["MACs input"] = row["macs_input"] if isinstance(row["macs_input"], str) else ""
            cells["CPU latency (ms)"] = None if pd.isna(row["latency_ms"]) else row["latency_ms"]
            lead = row.get("lead/psnr")
            cells["lead over next (dB)"] = None if pd.isna(lead) else lead
            cells["lead 95% CI"] = _ci(row.get("lead/ci_low"), row.get("lead/ci_high"), 2)
            cells["lead clear of noise"] = None if pd.isna(lead) else bool(row["lead/clear"])
            cells["rank change"] = row.get("rank_change") or ""  # e.g. "Y: +2": places gained under the other view
            cells["MLflow run"] = run_url(row["experiment_id"], row["run_id"])
            cells["run id"] = row["run_id"]
            rows.append(cells)
        tables[ranking] = pd.DataFrame(rows)
    return tables


def mark_rank_changes(frame: pd.DataFrame, colour: str = "#fff3bf"):
    """The ranking table as a Styler whose rows that change place between the views are highlighted."""
    def row_style(row: pd.Series) -> list[str]:
        return [f"background-color: {colour}" if moved(row.get("rank change", "")) else ""] * len(row)

    return frame.style.apply(row_style, axis=1)


def reported_table(board: Board) -> pd.DataFrame:
    """The reported rows with their citations (table order, not ranked)."""
    rows = []
    for row in board.reported.to_dict("records"):
        cells = {"citation": row["citation"], "method": row["method"], "zoo model": row["model"] or "",
                 "params (M)": None if pd.isna(row["params"]) else row["params"] / 1e6,
                 "PSNR avg": row["psnr/avg"], "SSIM avg": row["ssim/avg"]}
        for task in board.tasks:
            cells[f"PSNR {task}"] = row[f"psnr/{task}"]
            cells[f"SSIM {task}"] = row[f"ssim/{task}"]
        cells["view"] = row.get("view") or "not stated"  # the colour space the paper says it scored in
        cells["note"] = row["note"]
        rows.append(cells)
    return pd.DataFrame(rows)


def differences_table(board: Board) -> pd.DataFrame:
    """Reproduced minus reported PSNR per task for every model that has both, with the comparability caveat."""
    rows = []
    for row in board.differences.to_dict("records"):
        cells = {"model": row["model"], "variant": row["variant"], "entry": row["entry"], "ranking": row["ranking"],
                 "reported": f"{row['citation']}: {row['method']}", "Δ PSNR avg": row["psnr/avg"],
                 "Δ PSNR avg 95% CI": _ci(row["psnr/avg/ci_low"], row["psnr/avg/ci_high"], 2)}
        for task in board.tasks:
            cells[f"Δ PSNR {task}"] = row[f"psnr/{task}"]
        cells["comparable"] = bool(row["comparable"])
        cells["caveat"] = row["caveat"]
        rows.append(cells)
    return pd.DataFrame(rows)


def filter_options(runs: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The profiles and data sources present among the finished runs."""
    if runs.empty:
        return [], []
    return sorted(runs["profile"].dropna().unique()), sorted(runs["data_source"].dropna().unique())
