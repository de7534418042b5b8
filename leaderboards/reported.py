"""The papers' reported results: CSV tables in leaderboards/reported/, indexed by tables.yaml.

Values are kept exactly as the papers print them (one CSV row per table row) and read here into
pandas: `reported_values()` is one row per number with its citation, `reported_rows(setting)` is
one row per table row of a setting, in the setting's task names.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPORTED_DIR = Path(__file__).with_name("reported")
METRICS = ("psnr", "ssim")
NOT_STATED = "not stated"  # a table whose paper does not say which colour space it scored


@dataclass(frozen=True)
class TaskRef:
    """A column of a reported table: the setting's task it reports, its test set and level."""

    key: str
    test_set: str
    level: float | None = None


@dataclass(frozen=True)
class ReportedTable:
    """One table of one paper, stored as `<id>.csv`."""

    id: str
    paper: str
    paper_title: str
    table: str
    setting: str
    caption: str
    tasks: tuple[TaskRef, ...]
    view: str = NOT_STATED  # the protocol view (rgb | y | matlab) the paper says it scored with

    @property
    def citation(self) -> str:
        """How a value of this table is cited, e.g. 'HAIR Tab. 2'."""
        prefix = "Tab. " if self.table[:1].isdigit() else "slide "
        return f"{self.paper} {prefix}{self.table}"

    @property
    def path(self) -> Path:
        """The CSV file holding the table."""
        return REPORTED_DIR / f"{self.id}.csv"


@functools.lru_cache(maxsize=1)
def index() -> dict[str, Any]:
    """The parsed tables.yaml (papers, tables, settings and models not registered yet)."""
    return yaml.safe_load((REPORTED_DIR / "tables.yaml").read_text())


def tables() -> list[ReportedTable]:
    """Every reported table, in the order of tables.yaml."""
    from harness.public import VIEWS

    papers = index()["papers"]
    out = []
    for raw in index()["tables"]:
        paper = papers[raw["paper"]]
        tasks = tuple(TaskRef(k, v["test_set"], float(v["level"]) if "level" in v else None)
                      for k, v in raw["tasks"].items())
        view = raw.get("view", NOT_STATED)
        if view not in (*VIEWS, NOT_STATED):  # a typo would otherwise print as if the paper said it
            raise ValueError(f"tables.yaml: table {raw['id']} has view '{view}'; expected one of {', '.join(VIEWS)}")
        out.append(ReportedTable(raw["id"], paper["short"], paper["title"], str(raw["table"]), raw["setting"],
                                 " ".join(str(raw["caption"]).split()), tasks, view))
    return out


def reported_settings() -> list[str]:
    """Names of the settings that at least one reported table reports on."""
    return sorted({t.setting for t in tables()})


def _registered_setting(name: str) -> Any | None:
    from harness.public import SETTINGS

    return SETTINGS.get(name) if name in SETTINGS else None


def task_level(task: Any) -> float | None:
    """The numeric degradation level of a setting's task, or None for a task without one."""
    level = getattr(task, "level", None)
    return None if level is None else float(level)


def _task_names(table: ReportedTable) -> dict[str, str | None]:
    """Key -> task name of the registered setting (matched by level where the key has one)."""
    setting = _registered_setting(table.setting)
    if setting is None:
        return {t.key: t.key for t in table.tasks}
    by_level = {task_level(t): t.name for t in setting.tasks if task_level(t) is not None}
    names = {t.name for t in setting.tasks}
    resolved: dict[str, str | None] = {}
    for ref in table.tasks:
        if ref.level is not None and by_level:
            resolved[ref.key] = by_level.get(ref.level)
        else:
            resolved[ref.key] = ref.key if ref.key in names else None
    return resolved


def read_table(table: ReportedTable) -> pd.DataFrame:
    """The CSV of `table` as printed: method, model, params_m, <metric>/<key>..., note."""
    frame = pd.read_csv(table.path, dtype={"method": str, "model": str, "note": str}, keep_default_na=False,
                        na_values={c: [""] for c in ("params_m",)})
    for column in frame.columns:
        if "/" in column:
            frame[column] = pd.to_numeric(frame[column].replace("", math.nan), errors="raise")
    return frame


@functools.lru_cache(maxsize=1)
def _values() -> pd.DataFrame:
    rows = []
    for table in tables():
        refs = {t.key: t for t in table.tasks}
        names = _task_names(table)
        for position, record in enumerate(read_table(table).to_dict("records")):
            params = record.get("params_m")
            for column, value in record.items():
                if "/" not in column or pd.isna(value):
                    continue
                metric, key = column.split("/", 1)
                ref = refs.get(key)
                rows.append({
                    "table": table.id, "citation": table.citation, "paper": table.paper, "table_no": table.table,
                    "setting": table.setting, "row": position, "method": record["method"],
                    "model": record["model"] or None,
                    "params_m": None if params is None or pd.isna(params) else float(params),
                    "key": key, "task": "avg" if key == "avg" else names.get(key),
                    "level": ref.level if ref else None, "test_set": ref.test_set if ref else None,
                    "metric": metric, "value": float(value), "note": record.get("note") or "",
                    "view": table.view,
                })
    return pd.DataFrame(rows)


def reported_tasks(setting: str) -> list[str]:
    """The tasks the tables of `setting` report, in order of first appearance (levels ascending)."""
    values = _values()
    values = values[(values["setting"] == setting) & (values["task"] != "avg")].dropna(subset=["task"])
    ordered = values.sort_values("level", kind="stable") if values["level"].notna().any() else values
    return list(dict.fromkeys(ordered["task"]))


def reported_values() -> pd.DataFrame:
    """Every reported number, one per row, with its citation, setting, task, level and metric."""
    return _values().copy()


def reported_rows(setting: str, tasks: list[str] | None = None) -> pd.DataFrame:
    """One row per table row reporting on `setting`: citation, method, model, params, metric/task columns.

    Task columns follow `tasks` (default: the order in which the tables list them); a table that
    does not report a task leaves its cell empty (NaN).
    """
    values = _values()
    values = values[values["setting"] == setting]
    tasks = reported_tasks(setting) if tasks is None else tasks
    base = ["source", "citation", "paper", "table", "method", "model", "params", "note", "view"]
    columns = [f"{m}/{t}" for t in ["avg", *tasks] for m in METRICS]
    if values.empty:
        return pd.DataFrame(columns=base + columns)
    values = values.assign(column=values["metric"] + "/" + values["task"].fillna("?" + values["key"]))
    wide = values.pivot_table(index=["table", "row"], columns="column", values="value", aggfunc="first")
    meta = values.drop_duplicates(["table", "row"]).set_index(["table", "row"])
    frame = meta[["citation", "paper", "table_no", "method", "model", "params_m", "note", "view"]].join(wide)
    order = {t.id: i for i, t in enumerate(tables())}
    frame = frame.reset_index()
    frame = frame.sort_values(["table", "row"], key=lambda c: c.map(order) if c.name == "table" else c)
    frame = frame.drop(columns=["table", "row"]).rename(columns={"table_no": "table"}).reset_index(drop=True)
    frame.insert(0, "source", "reported")
    frame["params"] = frame.pop("params_m").map(lambda m: None if m is None or pd.isna(m) else round(m * 1e6))
    frame["model"] = frame["model"].astype(object).where(frame["model"].notna(), None)
    for column in columns:
        if column not in frame:
            frame[column] = math.nan
    return frame[base + columns]
