"""Real MLflow runs for the leaderboard and dashboard tests, without Ray.

A zoo model is evaluated on the embedded suite (real images, real metrics) and the result is
logged by the functions a real run uses: the run's tags from harness.runs.submit.run_tags, params
from RunConfig, and metrics, results/per_image.json and samples/<task>.png from
harness.runs.tracking.log_evaluation (the one function harness/runs/trial.py logs a run's scores with).
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.runs import tracking
from harness.runs.config import RunConfig
from harness.data import open_data
from harness.scoring.evaluation import EvaluationResult, evaluate
from harness.settings import get_setting
from harness.runs.submit import run_tags
from zoo import create_model


@contextmanager
def bench_home(path: Path):
    """RESTORATION_BENCH_HOME set to `path` (where the experiment's artifacts go) for the block."""
    old = os.environ.get("RESTORATION_BENCH_HOME")
    os.environ["RESTORATION_BENCH_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("RESTORATION_BENCH_HOME", None)
        else:
            os.environ["RESTORATION_BENCH_HOME"] = old


@functools.lru_cache(maxsize=None)
def evaluation(setting: str, model: str, variant: str = "tiny") -> EvaluationResult:
    """`model` (seeded initial weights) evaluated on every task of `setting` on the embedded suite."""
    torch.manual_seed(0)
    spec = get_setting(setting)
    return evaluate(create_model(model, variant), spec, open_data(spec))


def log_run(uri: str, setting: str, model: str, result: EvaluationResult, *, variant: str = "tiny",
            profile: str = "default", data_source: str | None = None, fingerprint: str | None = None,
            run_name: str | None = None, extra_metrics: dict[str, float] | None = None,
            status: str = "FINISHED", train_level: float | None = None,
            extra_tags: dict[str, str] | None = None) -> str:
    """Log `result` as a finished run of `model` on `setting`, as `harness submit` would; returns its id.

    `data_source` and `fingerprint` default to the embedded suite's; giving others records the
    run as scored on that data (what a --data-root run records). `train_level` records a
    dedicated one-level run of a continuous setting (`harness submit --dedicated`). `extra_tags`
    override run_tags' (e.g. the setting_version an older release of the setting recorded).
    """
    run = RunConfig(model=model, setting=setting, variant=variant, profile=profile, train_level=train_level)
    data = open_data(run.resolved_setting())
    tags = {**run_tags(run, data_source or data.name, fingerprint or data.fingerprint()), **(extra_tags or {})}
    client = tracking.client(uri)
    run_id = tracking.start_run(client, setting, run_name or f"{model}-{variant}-{setting}", tags, run.params())
    step = run.resolved_profile().steps
    if extra_metrics:  # e.g. efficiency.*, which a trial logs before its scores
        tracking.log_metrics(client, run_id, extra_metrics, step=step)
    tracking.log_evaluation(client, run_id, result, step=step)
    client.set_terminated(run_id, status)
    return run_id
