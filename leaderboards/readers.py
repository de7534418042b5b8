"""Reading finished runs and their per-image metrics from a tracking store, for the leaderboards.

Two readers give the same answers: `MlflowReader` through MLflow's client (any store: a server,
PostgreSQL, SQLite) and `SqliteReader`, which reads a local SQLite store's tables with Python's
sqlite3 and the run's artifact folder from disk. Importing MLflow's SQLAlchemy store costs about
2 s of a fresh `harness leaderboard` (issue 26, benchmarks/cli_latency.py), longer than the board
itself; a local store is what most people rank on, so `open_reader` reads it directly and uses
MLflow only for what the direct reader cannot do (a server, an artifact store that is not a local
folder, a schema it does not recognise). tests/test_leaderboard_readers.py checks that both give
the same runs and the same board on stores MLflow wrote.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from leaderboards.artifacts import PER_IMAGE
from leaderboards.bootstrap import PerImage

EXPERIMENT_PREFIX = "restoration-bench/"


@dataclass
class RunInfo:
    """The attributes of MLflow's RunInfo that the leaderboards read."""

    run_id: str
    run_name: str | None
    experiment_id: str
    start_time: int | None
    status: str
    artifact_uri: str | None


@dataclass
class RunData:
    """The attributes of MLflow's RunData that the leaderboards read (metrics: the latest value of each key)."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class RunRecord:
    """A run as the leaderboards see it: `info` and `data`, like MLflow's Run."""

    info: RunInfo
    data: RunData


class RunReader(Protocol):
    """What a leaderboard reads from a store."""

    def finished_runs(self, setting: str) -> list[Any]:
        """Every FINISHED, active run of `setting` (tag `setting`), newest first."""

    def per_image(self, run_id: str) -> PerImage | None:
        """The run's results/per_image.json, or None if it has none."""


class MlflowReader:
    """Runs through MLflow's client: any store MLflow can open."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)

    def finished_runs(self, setting: str) -> list[Any]:
        """Every FINISHED run of `setting`, through search_runs (all pages)."""
        from leaderboards.runs import finished_runs

        return finished_runs(self.client, setting)

    def per_image(self, run_id: str) -> PerImage | None:
        """The run's per-image metrics, downloaded through the client."""
        from leaderboards.artifacts import per_image_metrics

        return per_image_metrics(self.client, run_id)


class UnreadableStore(Exception):
    """The direct reader does not recognise this store (another schema, a locked or missing table)."""


class SqliteReader:
    """Runs read from a local MLflow SQLite store with sqlite3, read-only; artifacts from local folders.

    The queries mirror what MLflow's SQLAlchemy store does for `get_experiment_by_name` (any lifecycle
    stage) and `search_runs` (active runs, newest first, then by run id; a run's metrics are its
    `latest_metrics`, NaN where `is_nan`).
    """

    def __init__(self, database: Path, uri: str) -> None:
        self.database, self.uri = database, uri
        self._artifacts: dict[str, str | None] = {}
        self._fallback: MlflowReader | None = None

    def _query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        try:
            with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as connection:
                return connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as err:
            raise UnreadableStore(f"{self.database}: {err}") from err

    def finished_runs(self, setting: str) -> list[RunRecord]:
        """Every FINISHED, active run of `setting` in experiment restoration-bench/<setting>."""
        experiments = self._query("SELECT experiment_id FROM experiments WHERE name = ?", (EXPERIMENT_PREFIX + setting,))
        if not experiments:
            return []
        if len(experiments) > 1:  # several workspaces hold the name: MLflow knows which one is meant
            raise UnreadableStore(f"{self.database}: {len(experiments)} experiments named {EXPERIMENT_PREFIX}{setting}")
        experiment = experiments[0][0]
        finished = "FROM runs WHERE experiment_id = ? AND status = 'FINISHED' AND lifecycle_stage = 'active'"
        selected = f"SELECT run_uuid {finished}"
        runs = {uuid: RunRecord(RunInfo(uuid, name, str(experiment), start, status, artifacts), RunData())
                for uuid, name, start, status, artifacts in self._query(
                    f"SELECT run_uuid, name, start_time, status, artifact_uri {finished}", (experiment,))}
        for uuid, key, value in self._query(f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({selected})",
                                            (experiment,)):
            runs[uuid].data.tags[key] = value
        for uuid, key, value in self._query(f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({selected})",
                                            (experiment,)):
            runs[uuid].data.params[key] = value
        for uuid, key, value, is_nan in self._query(
                f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({selected})", (experiment,)):
            runs[uuid].data.metrics[key] = float("nan") if is_nan else float(value)
        chosen = [run for run in runs.values() if run.data.tags.get("setting") == setting]
        chosen.sort(key=lambda run: run.info.run_id)
        chosen.sort(key=lambda run: -(run.info.start_time or 0))  # stable: newest first, then by id, as MLflow
        self._artifacts.update({run.info.run_id: run.info.artifact_uri for run in chosen})
        return chosen

    def per_image(self, run_id: str) -> PerImage | None:
        """The run's per-image metrics from its artifact folder; through MLflow when that is not a local folder."""
        if run_id not in self._artifacts:
            rows = self._query("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,))
            self._artifacts[run_id] = rows[0][0] if rows else None
        folder = local_folder(self._artifacts[run_id])
        if folder is None:
            if self._fallback is None:
                self._fallback = MlflowReader(self.uri)
            return self._fallback.per_image(run_id)
        path = folder / PER_IMAGE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None


def local_folder(artifact_uri: str | None) -> Path | None:
    """The local folder of an artifact URI (a path or file://), None for any other scheme."""
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and artifact_uri[1:3] in (":\\", ":/")):  # a path (or C:\)
        return Path(artifact_uri)
    return None


class MissingStore:
    """A local SQLite store whose file does not exist: no runs. Reading never creates it (MLflow's client
    would write a new database there, and a mistyped path would look like an empty store from then on)."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def finished_runs(self, setting: str) -> list[Any]:
        """No runs: nothing has been logged to this store."""
        return []

    def per_image(self, run_id: str) -> PerImage | None:
        """No run, so no per-image metrics."""
        return None


def open_reader(uri: str) -> RunReader:
    """The reader for the store at `uri`: direct for a local SQLite file that exists, none for one that does
    not, MLflow's client otherwise."""
    from harness.public import sqlite_file

    database = sqlite_file(uri)
    if database is None:
        return MlflowReader(uri)
    return _Checked(SqliteReader(database, uri)) if database.exists() else MissingStore(database)


class _Checked:
    """A SqliteReader that hands over to MLflow's client for good if it cannot read the store."""

    def __init__(self, reader: SqliteReader) -> None:
        self.reader: SqliteReader | MlflowReader = reader
        self.uri = reader.uri

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.reader, name)(*args)
        except UnreadableStore:
            self.reader = MlflowReader(self.uri)
            return getattr(self.reader, name)(*args)

    def finished_runs(self, setting: str) -> list[Any]:
        """Every FINISHED run of `setting` (directly, or through MLflow when the store is not recognised)."""
        return self._call("finished_runs", setting)

    def per_image(self, run_id: str) -> PerImage | None:
        """The run's per-image metrics (directly, or through MLflow)."""
        return self._call("per_image", run_id)
