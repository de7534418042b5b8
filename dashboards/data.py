"""What the dashboard reads, through the MLflow client API only, cached with st.cache_data.

Nothing here writes: a SQLite store that does not exist is reported as empty instead of being
created (opening it with the MLflow client would create its tables).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from leaderboards.board import Board, build_board

TTL = 30  # seconds a cached query lives: new runs show up within this time


def tracking_uri() -> str:
    """The tracking URI `harness dashboard` passed on (MLFLOW_TRACKING_URI), else the harness default."""
    from harness.public import tracking_uri as default_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri()


def mlflow_ui() -> str:
    """Base URL of the MLflow UI that run links point to."""
    from dashboards.launch import mlflow_ui_url

    return mlflow_ui_url(tracking_uri(), os.environ.get("RESTORATION_BENCH_MLFLOW_UI"))


# MLflow 3.17's UI shows an experiment as its global GenAI / Model-training switch says (GenAI for a
# new browser) whatever the experiment's mlflow.experimentKind tag; this query opens the runs view
MODEL_TRAINING = "?workflowType=machine_learning"


def run_url(experiment_id: str, run_id: str) -> str:
    """Link to a run in the MLflow UI (its model-training view)."""
    return f"{mlflow_ui()}/#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING}"


def model_url(experiment_id: str, model_id: str) -> str:
    """Link to a logged model (an MLflow 3 LoggedModel) in the MLflow UI."""
    return f"{mlflow_ui()}/#/experiments/{experiment_id}/models/{model_id}{MODEL_TRAINING}"


def version_url(name: str, version: str) -> str:
    """Link to a version of a registered model in the MLflow UI."""
    from urllib.parse import quote

    return f"{mlflow_ui()}/#/models/{quote(name, safe='')}/versions/{version}"


def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file is missing (nothing to read); True for anything else."""
    from harness.public import missing_local_store

    return missing_local_store(uri) is None


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def all_settings() -> list[str]:
    """Registered settings and settings only the papers report on, sorted."""
    from harness.public import SETTINGS
    from leaderboards.reported import reported_settings

    return sorted(set(SETTINGS.names()) | set(reported_settings()))


@st.cache_data(ttl=TTL, show_spinner=False)
def board(uri: str, setting: str, pick: str = "best", profiles: tuple[str, ...] | None = None,
          data_sources: tuple[str, ...] | None = None, view: str | None = None) -> Board:
    """The setting's board (every source) from the store at `uri`, runs filtered by profile and data source,
    ranked under the protocol view `view` (rgb, y or matlab; None: the setting's own)."""
    return build_board(setting, uri if store_exists(uri) else None, source="all", pick=pick, profile=profiles,
                       data_source=data_sources, view=view)


@st.cache_data(ttl=TTL, show_spinner=False)
def level_board(uri: str, setting: str) -> dict:
    """Per-level rows of a registered continuous setting, with its dedicated per-level runs (leaderboards.levels)."""
    from harness.public import SETTINGS
    from leaderboards.levels import level_board as build
    from leaderboards.reported import task_level

    if not store_exists(uri) or setting not in SETTINGS:
        return {"boards": []}
    spec = SETTINGS.get(setting)
    levels = {t.name: task_level(t) for t in spec.tasks if task_level(t) is not None}
    if not levels:
        return {"boards": []}
    return build(setting, uri, levels, spec.trained_range(), spec.version)


@st.cache_data(ttl=TTL, show_spinner=False)
def claims(uri: str) -> pd.DataFrame:
    """Every finished claim run's comparisons (leaderboards/claims.py); empty when none has run."""
    from leaderboards.claims import claim_rows

    return claim_rows(_client(uri)) if store_exists(uri) else pd.DataFrame()


@st.cache_data(ttl=TTL, show_spinner=False)
def runs(uri: str, setting: str) -> pd.DataFrame:
    """Every finished run of the setting (not only the one per model the board picks), newest first."""
    from leaderboards.board import setting_tasks
    from leaderboards.readers import open_reader
    from leaderboards.runs import run_table

    if not store_exists(uri):
        return pd.DataFrame()
    tasks, version = setting_tasks(setting)
    frame = run_table(open_reader(uri).finished_runs(setting), tasks, version)
    return frame.sort_values("start_time", ascending=False).reset_index(drop=True) if not frame.empty else frame


@st.cache_data(ttl=TTL, show_spinner=False)
def run_record(uri: str, run_id: str) -> dict[str, Any]:
    """A run's info, tags, params and latest metrics as plain dicts."""
    run = _client(uri).get_run(run_id)
    return {"run_id": run.info.run_id, "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
            "status": run.info.status, "start_time": run.info.start_time, "end_time": run.info.end_time,
            "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            "params": dict(run.data.params), "metrics": dict(run.data.metrics)}


@st.cache_data(ttl=TTL, show_spinner=False)
def run_models(uri: str, run_id: str, evaluated_id: str | None = None) -> list[dict[str, Any]]:
    """The MLflow models of a run: those it logged (`harness submit`) and the one it evaluated (`evaluated_id`,
    the `logged_model.id` tag of `harness evaluate --weights runs:/...`), each with its registered versions."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    run = client.get_run(run_id)
    ids = [(o.model_id, "logged") for o in (run.outputs.model_outputs if run.outputs else [])]
    if evaluated_id:
        ids.append((evaluated_id, "evaluated"))
    found = []
    for model_id, role in ids:
        try:
            model = client.get_logged_model(model_id)
            # a search leaves out the aliases (MLflow 3.17): each version is read once more for them
            versions = [client.get_model_version(v.name, v.version)
                        for v in client.search_model_versions(f"run_id = '{model.source_run_id}'")]
        except MlflowException:  # deleted, or a store that does not keep logged models
            continue
        found.append({"model_id": model_id, "name": model.name, "role": role, "experiment_id": model.experiment_id,
                      "source_run": model.source_run_id,
                      "versions": [(v.name, str(v.version), sorted(v.aliases)) for v in versions
                                   if getattr(v, "model_id", None) in (None, model_id)]})
    return found


@st.cache_data(ttl=300, show_spinner=False)
def per_image(uri: str, run_id: str) -> dict | None:
    """The run's per-image metrics (results/per_image.json)."""
    from leaderboards.readers import open_reader

    return open_reader(uri).per_image(run_id)


@st.cache_data(ttl=300, show_spinner=False)
def sample_tasks(uri: str, run_id: str) -> list[str]:
    """Tasks with a sample strip in the run's artifacts."""
    from leaderboards.artifacts import sample_tasks as tasks

    return tasks(_client(uri), run_id)


@st.cache_data(ttl=300, show_spinner=False)
def sample(uri: str, run_id: str, task: str) -> np.ndarray | None:
    """The run's 'degraded | restored | target' strip of `task`."""
    from leaderboards.artifacts import sample_strip

    return sample_strip(_client(uri), run_id, task)
