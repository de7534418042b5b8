"""MLflow bookkeeping: one experiment per setting, one run per submission.

The driver creates the run and ends it (FINISHED only after a successful evaluation, FAILED or
KILLED otherwise); the Ray trial logs into it through an explicit tracking URI and run id,
because MLflow's process-global state does not reach Ray workers (mlflow/mlflow#7206).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.runs.store import home, missing_local_store, sqlite_file

PARAM_LIMIT = 6000  # MLflow's maximum param value length
BATCH = 900  # MLflow accepts at most 1000 entities per log_batch
#: the experiment tag that makes MLflow's UI (3.x) open an experiment on its runs table
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
OUTPUTS = "outputs"  # artifact folder of the restored test images: outputs/<task>/<image>.png
OUTPUT_COMPRESSION = 1  # zlib level of saved PNGs (lossless at every level; 1 is fast)


_READY_STORES: set[str] = set()  # SQLite stores this process has already seen initialised


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive inter-process lock on a SQLite store (a no-op for other stores).

    MLflow creates and migrates a new SQLite database on first use, and several processes doing
    it at once corrupt the schema ('duplicate column name', alembic version mismatches); creating
    an experiment twice fails the slower process. Both steps run under this lock. Ordinary writes
    need no lock: SQLite serialises them and pysqlite waits for a busy database.
    """
    database = sqlite_file(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def client(uri: str) -> MlflowClient:
    """An MLflow client bound to `uri`; a new SQLite store is created by one process at a time."""
    if uri.startswith("sqlite:") and uri not in _READY_STORES:
        with store_lock(uri):
            database = sqlite_file(uri)
            if database is not None:
                _copy_empty_schema(database)
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates/migrates the schema
        _READY_STORES.add(uri)
    return MlflowClient(tracking_uri=uri)


def existing_run(uri: str, run_id: str) -> tuple[MlflowClient, Run]:
    """An MLflow client of `uri` and its run `run_id`; ValueError naming both when there is no such run.

    A local SQLite store that does not exist is named and left uncreated (opening it would write an
    empty store there, and a mistyped path would then look like a store without that run)."""
    if (database := missing_local_store(uri)) is not None:
        raise ValueError(f"no MLflow run '{run_id}': there is no tracking store at {database}")
    mlflow = client(uri)
    try:
        return mlflow, mlflow.get_run(run_id)
    except MlflowException as err:
        raise ValueError(f"no MLflow run '{run_id}' in {uri}") from err


def _copy_empty_schema(database: Path) -> None:
    """Start a new SQLite store as a copy of an empty database that MLflow's migrations already ran on.

    Running the migrations (about a hundred alembic scripts) takes ~2 s per new store here, and
    every submission in a fresh state folder, test or first run pays it; the copy takes
    milliseconds. The template is kept per MLflow and SQLAlchemy version in the cache folder and
    holds tables only: MLflow adds its Default experiment when it opens the copy, as it would
    have. Anything unexpected (no cache folder, MLflow's internals changed) leaves the store to
    MLflow's own creation.
    """
    if database.exists():
        return
    try:
        import sqlalchemy
        from mlflow import __version__ as mlflow_version
        from mlflow.store.db.utils import _initialize_tables

        from harness.cache import cache_dir

        template = cache_dir() / f"mlflow-{mlflow_version}-sqlalchemy-{sqlalchemy.__version__}-empty.db"
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=template.parent, suffix=".db", delete=False) as handle:
                building = Path(handle.name)
            try:
                engine = sqlalchemy.create_engine(f"sqlite:///{building}")
                _initialize_tables(engine)
                engine.dispose()
                building.replace(template)  # atomic: a concurrent builder's copy is as good
            finally:
                building.unlink(missing_ok=True)
        copy = database.with_name(f".{database.name}.{os.getpid()}.new")  # created with the user's umask, as MLflow's
        try:
            copy.write_bytes(template.read_bytes())
            copy.replace(database)
        finally:
            copy.unlink(missing_ok=True)  # a copy that failed half-way
    except Exception:  # MLflow creates the store itself
        return


def experiment_id(mlflow: MlflowClient, setting: str) -> str:
    """The experiment holding runs of `setting`, created (with a local artifact root) if needed.

    Every experiment carries EXPERIMENT_KIND, so MLflow's UI opens it on its runs (not on the
    GenAI overview); one made before the tag existed gets it here, the next time it is written to.
    """
    name = f"restoration-bench/{setting}"
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            mlflow.set_experiment_tag(existing.experiment_id, *EXPERIMENT_KIND)
        return existing.experiment_id
    with store_lock(mlflow.tracking_uri):  # another submission may be creating it right now
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            return experiment_id(mlflow, setting)
        artifacts = None
        if mlflow.tracking_uri.startswith("sqlite:"):
            artifacts = (home() / "artifacts").as_uri()
        try:
            return mlflow.create_experiment(name, artifact_location=artifacts,
                                            tags={"setting": setting, EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]})
        except MlflowException as err:
            # a tracking server takes no file lock: another submission may have created it in between
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return mlflow.get_experiment_by_name(name).experiment_id


def start_run(mlflow: MlflowClient, setting: str, run_name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
    """Create a RUNNING run with tags and params; return its id."""
    run = mlflow.create_run(experiment_id(mlflow, setting), run_name=run_name, tags=tags)
    entries = [Param(k, str(v)[:PARAM_LIMIT]) for k, v in params.items()]
    for i in range(0, len(entries), BATCH):
        mlflow.log_batch(run.info.run_id, params=entries[i : i + BATCH])
    return run.info.run_id


def log_metrics(mlflow: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log a dict of metrics at `step` in one request."""
    import time

    now = int(time.time() * 1000)
    entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(entries), BATCH):
        mlflow.log_batch(run_id, metrics=entries[i : i + BATCH])


def set_tags(mlflow: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """Set several tags at once."""
    mlflow.log_batch(run_id, tags=[RunTag(k, str(v)[:PARAM_LIMIT]) for k, v in tags.items()])


def log_json(mlflow: MlflowClient, run_id: str, payload: Any, name: str, artifact_path: str | None = None) -> None:
    """Store `payload` as a JSON artifact file called `name`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, default=str))
        mlflow.log_artifact(run_id, str(path), artifact_path)


def log_samples(mlflow: MlflowClient, run_id: str, examples: dict[str, tuple[np.ndarray, ...]]) -> None:
    """Store one 'degraded | restored | target' strip per task as PNG under samples/."""
    from skimage.io import imsave

    with tempfile.TemporaryDirectory() as tmp:
        for task, images in examples.items():
            strip = np.concatenate([np.clip(im, 0, 1) for im in images], axis=1)
            imsave(Path(tmp) / f"{task}.png", (strip * 255).round().astype(np.uint8), check_contrast=False)
        mlflow.log_artifacts(run_id, tmp, "samples")


def log_outputs(mlflow: MlflowClient, run_id: str, outputs: dict[str, dict[str, np.ndarray]]) -> int:
    """Store restored images as lossless 8-bit PNGs outputs/<task>/<image>.png; return their total bytes."""
    from PIL import Image

    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for task, images in outputs.items():
            folder = Path(tmp) / task
            folder.mkdir()
            for name, pixels in images.items():
                path = folder / output_file(name)
                Image.fromarray(pixels).save(path, compress_level=OUTPUT_COMPRESSION)
                total += path.stat().st_size
        mlflow.log_artifacts(run_id, tmp, OUTPUTS)
    return total


def output_file(image: str) -> str:
    """The file name a restored test image is saved under: its stem with '.png'."""
    return f"{Path(image).stem}.png"


def log_views(mlflow: MlflowClient, run_id: str, views: dict) -> None:
    """Record every scoring view: `<prefix>protocol.*` params (the main view's come with the run) and tags."""
    from harness.scoring.views import protocol_params, scored_tag

    params = {k: v for p, protocol in views.items() if p for k, v in protocol_params(p, protocol).items()}
    if params:
        mlflow.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    set_tags(mlflow, run_id, {k: v for p, protocol in views.items() for k, v in scored_tag(p, protocol).items()})


def log_evaluation(mlflow: MlflowClient, run_id: str, result, step: int) -> dict[str, float]:
    """Log an EvaluationResult as every run logs it: psnr/ssim/... per task and on average at `step`
    (each extra view under its prefix, e.g. y/psnr/derain), results/per_image.json, one
    samples/<task>.png strip per task, and the restored images when the result kept them
    (outputs/<task>/<image>.png, metric outputs.bytes); returns the metrics.

    The one place a run's scores are written: trials, ADS runs and the test fixtures of the
    leaderboard and dashboard (tests/mlflow_runs.py) all log through it, so they cannot drift apart.
    """
    metrics = result.flat_metrics()
    outputs = {t: r.outputs for t, r in result.tasks.items() if r.outputs}
    if outputs:
        metrics["outputs.bytes"] = float(log_outputs(mlflow, run_id, outputs))
    set_tags(mlflow, run_id, {"outputs": "saved" if outputs else "none"})
    log_views(mlflow, run_id, result.views)
    log_metrics(mlflow, run_id, metrics, step=step)
    log_json(mlflow, run_id, {t: r.per_image for t, r in result.tasks.items()}, "per_image.json", "results")
    log_samples(mlflow, run_id, {t: r.example for t, r in result.tasks.items() if r.example})
    return metrics


def reopen_for_resume(mlflow: MlflowClient, run) -> None:
    """Mark an interrupted or crashed `run` RUNNING again: count the resume, drop its error tag."""
    run_id = run.info.run_id
    mlflow.update_run(run_id, status="RUNNING")
    set_tags(mlflow, run_id, {"resumed": str(int(run.data.tags.get("resumed", "0")) + 1)})
    if "error" in run.data.tags:
        mlflow.delete_tag(run_id, "error")
