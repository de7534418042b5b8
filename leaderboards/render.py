"""A Board as JSON records, CSV, a plain-text table or Markdown (the `harness leaderboard` formats)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from leaderboards.board import Board
from leaderboards.reported import METRICS

FORMATS = ("table", "csv", "json", "markdown")


def _num(value: Any) -> Any:
    """JSON-safe scalar: NaN/None -> None, numpy scalars -> Python."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


def _scores(row: dict[str, Any], name: str, intervals: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for metric in METRICS:
        out[metric] = _num(row.get(f"{metric}/{name}"))
        if intervals:
            low, high = _num(row.get(f"{metric}/{name}/ci_low")), _num(row.get(f"{metric}/{name}/ci_high"))
            out[f"{metric}_ci95"] = None if low is None else [low, high]
    return out


def _difference_records(board: Board, run_id: str) -> list[dict[str, Any]]:
    if board.differences.empty:
        return []
    rows = board.differences[board.differences["run_id"] == run_id].to_dict("records")
    return [{"citation": r["citation"], "method": r["method"], "entry": r["entry"], "comparable": bool(r["comparable"]),
             "caveat": r["caveat"], "average": _scores(r, "avg", True),
             "tasks": {t: _scores(r, t, True) for t in board.tasks}} for r in rows]


def view_records(views: dict[str, dict[str, float]] | None, tasks: list[str]) -> dict[str, Any]:
    """Every view a run holds, by metric prefix ('' : the setting's own protocol), as average and per-task scores."""
    return {prefix.rstrip("/") or "own": {"average": _scores(cols, "avg", False), "tasks": {t: _scores(cols, t, False) for t in tasks}}
            for prefix, cols in (views or {}).items()}


def board_records(board: Board) -> dict[str, Any]:
    """The board as a JSON-ready dict: reproduced rows (ranked per ranking), then reported rows (cited)."""
    rows = []
    for row in board.reproduced.to_dict("records"):
        lead = None
        if _num(row.get("lead/psnr")) is not None:
            lead = {"over": row["lead/over"], "psnr": _num(row["lead/psnr"]),
                    "psnr_ci95": [_num(row["lead/ci_low"]), _num(row["lead/ci_high"])], "clear": bool(row["lead/clear"])}
            if _num(row.get("lead/seeds_ci_low")) is not None:  # a seeded entry on either side
                lead["psnr_seeds_ci95"] = [_num(row["lead/seeds_ci_low"]), _num(row["lead/seeds_ci_high"])]
        rows.append({
            "source": "reproduced", "ranking": row["ranking"], "rank": int(row["rank"]), "model": row["model"],
            "variant": row["variant"], "entry": row["entry"], "pick": row["pick"], "runs": int(row["runs"]),
            "seeds": int(row.get("seeds", 1)), "interval": interval_scope(row.get("seeds", 1)),
            "seed_runs": list(row.get("seed_runs") or [row["run_id"]]), "profile": row["profile"],
            "budget": row.get("budget"), "precision": row.get("precision", "fp32"), "data_source": row["data_source"], "data_fingerprint": row["data_fingerprint"], "run_id": row["run_id"],
            "run_name": row["run_name"], "images_per_task": _num(row.get("images")),
            "average": _scores(row, "avg", True), "tasks": {t: _scores(row, t, True) for t in board.tasks},
            "params": _num(row["params"]), "params_source": row["params_source"], "macs": _num(row["macs"]),
            "macs_input": row["macs_input"] if isinstance(row["macs_input"], str) else None,
            "latency_ms": _num(row["latency_ms"]),
            "lead_over_next": lead, "vs_reported": _difference_records(board, row["run_id"]),
            "rank_change": row.get("rank_change") or None, "views": view_records(row.get("views"), board.tasks),
        })
    for row in board.reported.to_dict("records"):
        rows.append({
            "source": "reported", "citation": row["citation"], "paper": row["paper"], "table": row["table"],
            "method": row["method"], "model": row["model"], "rank": None, "run_id": None,
            "params": _num(row["params"]), "note": row["note"], "view": row.get("view", "not stated"),
            "average": _scores(row, "avg", False), "tasks": {t: _scores(row, t, False) for t in board.tasks},
        })
    return {"setting": board.setting, "version": board.version, "source": board.source, "pick": board.pick,
            "view": board.view,
            "tasks": board.tasks, "confidence": "95% percentile bootstrap over test images (2000 resamples, seed 0)",
            "rankings": list(dict.fromkeys(board.reproduced["ranking"])), "rows": rows}


def interval_scope(seeds: Any) -> str:
    """What a row's interval covers: test images only for one seed, else seeds and then test images."""
    n = int(seeds) if _num(seeds) is not None else 1
    return "test images only (one seed)" if n <= 1 else f"{n} seeds, then test images within each seed"


def seeds_view(board: Board) -> pd.DataFrame:
    """Display cells of each seed of the seeded entries on the board (`harness leaderboard --show-seeds`)."""
    rows = []
    for row in board.seed_rows.to_dict("records"):
        cells = {"entry run": row["seed_parent"], "model": row["model"], "variant": row["variant"], "seed": row["seed"]}
        for name in ["avg", *board.tasks]:
            for metric in METRICS:
                cells[f"{metric}/{name}"] = _fmt(row.get(f"{metric}/{name}"), metric)
        cells["run"] = row["run_id"]
        rows.append(cells)
    return pd.DataFrame(rows)


def _value_columns(tasks: list[str], intervals: bool) -> list[str]:
    columns = []
    for name in ["avg", *tasks]:
        for metric in METRICS:
            columns.append(f"{metric}/{name}")
            if intervals:
                columns += [f"{metric}/{name}/ci_low", f"{metric}/{name}/ci_high"]
    return columns


def board_frame(board: Board) -> pd.DataFrame:
    """One flat table (the CSV): reproduced rows, reported rows, then reproduced-minus-reported rows."""
    values = _value_columns(board.tasks, True)
    head = ["rank", "model", "variant", "source", "entry", "seeds", "ranking", "citation", "method", "profile",
            "budget", "precision", "data_source"]
    tail = ["params", "params_source", "macs", "macs_input", "latency_ms", "lead/over", "lead/psnr", "lead/ci_low", "lead/ci_high",
            "lead/clear", "comparable", "run_id", "data_fingerprint", "note", "rank_change", "view"]
    parts = []
    if not board.reproduced.empty:  # reproduced numbers are those of the view ranked on
        parts.append(board.reproduced.assign(source="reproduced", view=board.view))
    if not board.reported.empty:
        parts.append(board.reported.assign(variant="paper"))
    if not board.differences.empty:
        parts.append(board.differences.assign(source="reproduced minus reported", note=board.differences["caveat"]))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for column in head + values + tail:
        if column not in frame:
            frame[column] = None
    return frame[head + values + tail]


def _fmt(value: Any, metric: str) -> str:
    value = _num(value)
    if value is None:
        return "-"
    return f"{value:.2f}" if metric == "psnr" else f"{value:.3f}"


def _with_ci(row: dict[str, Any], column: str) -> str:
    metric = column.split("/")[0]
    low, high = _num(row.get(f"{column}/ci_low")), _num(row.get(f"{column}/ci_high"))
    cell = _fmt(row.get(column), metric)
    return cell if low is None else f"{cell} [{_fmt(low, metric)},{_fmt(high, metric)}]"


def _millions(value: Any) -> str:
    value = _num(value)
    return "-" if value is None else f"{value / 1e6:.2f}M"


def _giga(value: Any) -> str:
    value = _num(value)
    return "-" if value is None else f"{value / 1e9:.2f}G"


def reproduced_view(board: Board, ranking: str) -> pd.DataFrame:
    """Display cells of one ranking: mean [95% CI] per metric, efficiency and the lead over the next row."""
    rows = []
    records = board.reproduced[board.reproduced["ranking"] == ranking].to_dict("records")
    compared = any(row.get("rank_change") for row in records)  # the column shows when another view exists
    for row in records:
        cells = {"rank": int(row["rank"]), "model": row["model"], "variant": row["variant"], "entry": row["entry"],
                 "profile": row["profile"], "budget": row.get("budget") or "-", "precision": row.get("precision", "fp32"),
                 "seeds": int(row.get("seeds", 1))}
        for name in ["avg", *board.tasks]:
            for metric in METRICS:
                cells[f"{metric}/{name}"] = _with_ci(row, f"{metric}/{name}")
        cells["params"] = _millions(row["params"]) + (" (zoo)" if row["params_source"] == "zoo" else "")
        measured_at = row["macs_input"] if isinstance(row["macs_input"], str) else ""
        cells["MACs"] = _giga(row["macs"]) + (f" @{measured_at}" if measured_at else "")
        lead = _num(row.get("lead/psnr"))
        cells["lead over next"] = "-" if lead is None else (
            f"{lead:+.2f} [{row['lead/ci_low']:+.2f},{row['lead/ci_high']:+.2f}]"
            + ("" if _num(row.get("lead/seeds_ci_low")) is None
               else f" seeds [{row['lead/seeds_ci_low']:+.2f},{row['lead/seeds_ci_high']:+.2f}]")
            + ("" if row["lead/clear"] else " (within noise)"))
        if compared:  # '-': this entry has no scores in the other view
            cells["rank change"] = row.get("rank_change") or "-"
        cells["run"] = row["run_id"]
        rows.append(cells)
    return pd.DataFrame(rows)


def reported_view(board: Board) -> pd.DataFrame:
    """Display cells of the reported rows, with their citations."""
    rows = []
    for row in board.reported.to_dict("records"):
        params = _num(row["params"])
        cells = {"citation": row["citation"], "method": row["method"], "model": row["model"] or "-",
                 "params": "-" if params is None else f"{params / 1e6:g}M", "view": row.get("view", "not stated")}
        for name in ["avg", *board.tasks]:
            for metric in METRICS:
                cells[f"{metric}/{name}"] = _fmt(row.get(f"{metric}/{name}"), metric)
        rows.append(cells)
    return pd.DataFrame(rows)


def differences_view(board: Board) -> pd.DataFrame:
    """Display cells of reproduced minus reported (PSNR and SSIM per task), with the caveat."""
    rows = []
    for row in board.differences.to_dict("records"):
        cells = {"model": row["model"], "variant": row["variant"], "entry": row["entry"], "ranking": row["ranking"],
                 "vs": f"{row['citation']} {row['method']}"}
        for name in ["avg", *board.tasks]:
            for metric in METRICS:
                value = _num(row.get(f"{metric}/{name}"))
                cells[f"{metric}/{name}"] = "-" if value is None else f"{value:+.2f}" if metric == "psnr" else f"{value:+.3f}"
        cells["comparable"] = "yes" if row["comparable"] else "no: " + row["caveat"]
        rows.append(cells)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def board_text(board: Board, markdown: bool = False) -> str:
    """The board as plain-text (or Markdown) sections: one per ranking, the reported rows, the differences."""
    table = _markdown if markdown else (lambda f: f.to_string(index=False))
    heading = (lambda s: f"### {s}") if markdown else (lambda s: s)
    version = f" v{board.version}" if board.version is not None else " (not a registered setting: reported only)"
    out = [heading(f"Leaderboard {board.setting}{version}: PSNR dB / SSIM")]
    if board.source != "reported":
        if board.reproduced.empty and board.missing_view:
            out.append(f"No finished run holds {board.view.upper()}-view scores yet; add them from the saved "
                       f"outputs with `{board.missing_view}`.")
        elif board.reproduced.empty:
            out.append("No finished runs of this setting in the tracking store.")
        for ranking in dict.fromkeys(board.reproduced["ranking"]):
            out += ["", heading(f"Reproduced, ranked on {ranking}, {board.view.upper()} view: {board.pick} run per model; "
                                "cells are mean [95% bootstrap CI over test images; over seeds, then test images, "
                                "for an entry with seeds > 1]"), table(reproduced_view(board, ranking))]
    if board.source != "reproduced":
        out += ["", heading("Reported in the papers (not ranked; each row cites its table)")]
        out.append(table(reported_view(board)) if not board.reported.empty else "No reported results for this setting.")
    if not board.differences.empty:
        out += ["", heading("Reproduced minus reported (comparable only for the paper configuration or released "
                            "weights, on real data)"), table(differences_view(board))]
    return "\n".join(out) + "\n"
