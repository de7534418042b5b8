"""The data behind the dashboard's figures (pandas) and the Altair charts drawn from it."""
from __future__ import annotations

import altair as alt
import pandas as pd

from leaderboards.board import Board

COLUMNS = ["label", "source", "group", "model", "params_m", "psnr", "psnr_low", "psnr_high"]


def _reproduced_label(row: dict) -> str:
    return f"{row['model']} ({row['variant']}, {row['profile']})"


def _reported_label(row: dict) -> str:
    return f"{row['method']} [{row['citation']}]"


def efficiency_points(board: Board) -> pd.DataFrame:
    """Parameters (millions) against average PSNR for every row that has both (the papers' efficiency figure)."""
    rows = []
    for row in board.reproduced.to_dict("records"):
        rows.append({"label": _reproduced_label(row), "source": "reproduced", "group": f"reproduced: {row['ranking']}",
                     "model": row["model"], "params_m": None if pd.isna(row["params"]) else row["params"] / 1e6,
                     "psnr": row["psnr/avg"], "psnr_low": row["psnr/avg/ci_low"], "psnr_high": row["psnr/avg/ci_high"]})
    for row in board.reported.to_dict("records"):
        rows.append({"label": _reported_label(row), "source": "reported", "group": f"reported: {row['citation']}",
                     "model": row["model"], "params_m": None if pd.isna(row["params"]) else row["params"] / 1e6,
                     "psnr": row["psnr/avg"], "psnr_low": None, "psnr_high": None})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.dropna(subset=["params_m", "psnr"]).reset_index(drop=True)


def task_bars(board: Board) -> pd.DataFrame:
    """Long table of PSNR per task and row (label, source, group, task, psnr, CI) for grouped bars."""
    rows = []
    for row in board.reproduced.to_dict("records"):
        for task in board.tasks:
            rows.append({"label": _reproduced_label(row), "source": "reproduced", "group": row["ranking"],
                         "task": task, "psnr": row[f"psnr/{task}"], "psnr_low": row[f"psnr/{task}/ci_low"],
                         "psnr_high": row[f"psnr/{task}/ci_high"]})
    for row in board.reported.to_dict("records"):
        for task in board.tasks:
            rows.append({"label": _reported_label(row), "source": "reported", "group": row["citation"],
                         "task": task, "psnr": row[f"psnr/{task}"], "psnr_low": None, "psnr_high": None})
    frame = pd.DataFrame(rows, columns=["label", "source", "group", "task", "psnr", "psnr_low", "psnr_high"])
    return frame.dropna(subset=["psnr"]).reset_index(drop=True)


def setting_levels(setting: str) -> dict[str, float]:
    """Task -> degradation level of a continuous setting (registered, else as the papers' tables give it)."""
    from harness.public import SETTINGS
    from leaderboards.reported import reported_values, task_level

    if setting in SETTINGS:
        return {t.name: task_level(t) for t in SETTINGS.get(setting).tasks if task_level(t) is not None}
    values = reported_values()
    values = values[(values["setting"] == setting) & values["level"].notna() & values["task"].notna()]
    return dict(zip(values["task"], values["level"].astype(float)))


def level_curves(board: Board, levels: dict[str, float]) -> pd.DataFrame:
    """PSNR against level for every row (reproduced with its CI, reported as printed), sorted by level."""
    bars = task_bars(board)
    bars = bars[bars["task"].isin(levels)]
    curves = bars.assign(level=bars["task"].map(levels))
    return curves.sort_values(["source", "label", "level"]).reset_index(drop=True)


def dedicated_curves(levels_board: dict) -> pd.DataFrame:
    """PSNR against level of the dedicated one-model-per-level runs (HyperRes's "Baseline"), per model.

    `levels_board` is leaderboards.levels.level_board's result; levels without a dedicated run are left out.
    """
    rows = []
    for entry in levels_board.get("boards", []):
        label = f"dedicated per level: {entry['model']} ({entry['variant']})"
        for row in entry["rows"]:
            if row.get("dedicated_psnr") is not None:
                rows.append({"label": label, "source": "reproduced", "group": "dedicated", "task": row["task"],
                             "psnr": row["dedicated_psnr"], "psnr_low": None, "psnr_high": None,
                             "level": float(row["level"])})
    return pd.DataFrame(rows, columns=["label", "source", "group", "task", "psnr", "psnr_low", "psnr_high", "level"])


def scatter_chart(points: pd.DataFrame) -> alt.Chart:
    """Parameters against average PSNR, one colour per source group, CI whiskers on reproduced points."""
    base = alt.Chart(points).encode(
        x=alt.X("params_m:Q", title="parameters (millions)", scale=alt.Scale(type="symlog")),
        color=alt.Color("group:N", title="source"),
    )
    dots = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("psnr:Q", title="average PSNR (dB)", scale=alt.Scale(zero=False)),
        shape=alt.Shape("source:N"), tooltip=["label", "group", "params_m", "psnr", "psnr_low", "psnr_high"])
    whiskers = base.transform_filter("isValid(datum.psnr_low)").mark_rule().encode(y="psnr_low:Q", y2="psnr_high:Q")
    return (whiskers + dots).properties(height=420)


def bars_chart(bars: pd.DataFrame) -> alt.Chart:
    """Grouped bars of PSNR per task, CI whiskers on reproduced rows."""
    base = alt.Chart(bars).encode(x=alt.X("label:N", title=None, axis=alt.Axis(labels=False)),
                                  color=alt.Color("label:N", title="row"))
    bar = base.mark_bar().encode(y=alt.Y("psnr:Q", title="PSNR (dB)"), tooltip=["label", "task", "psnr", "psnr_low", "psnr_high"])
    whisker = base.transform_filter("isValid(datum.psnr_low)").mark_rule(color="black").encode(y="psnr_low:Q", y2="psnr_high:Q")
    return alt.layer(bar, whisker, data=bars).facet(column=alt.Column("task:N", title=None))


def curves_chart(curves: pd.DataFrame, level_name: str = "level") -> alt.Chart:
    """PSNR against level, one line per row, a CI band on reproduced rows."""
    base = alt.Chart(curves).encode(x=alt.X("level:Q", title=level_name), color=alt.Color("label:N", title="row"))
    line = base.mark_line(point=True).encode(
        y=alt.Y("psnr:Q", title="PSNR (dB)", scale=alt.Scale(zero=False)),
        strokeDash=alt.StrokeDash("source:N"), tooltip=["label", "level", "psnr", "psnr_low", "psnr_high"])
    band = base.transform_filter("isValid(datum.psnr_low)").mark_area(opacity=0.2).encode(y="psnr_low:Q", y2="psnr_high:Q")
    return (band + line).properties(height=420)
