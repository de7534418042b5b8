"""A run's data as MLflow dataset inputs: the test set (context `test`) and the training data (`train`).

The test set's digest is the run's `data_fingerprint` tag, the number the leaderboard ranks by,
so MLflow's Dataset column and its filter group runs exactly as the leaderboard does. Each
dataset is a table of per-image rows (task, image, degraded, target), also kept as a CSV
artifact under datasets/ so the rows themselves can be read back.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

MANIFESTS = "datasets"  # artifact folder of the manifests
RETRIES = 3  # concurrent runs may insert the same dataset at once; the loser retries and finds it


def _table(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["task", "image", "degraded", "target"])


def training_digest(data, rows: list[dict[str, str]]) -> str:
    """16 hex digits of SHA-256 over the training manifest and the training tasks' degradations."""
    tasks = [[t.name, t.degradation.kind, t.degradation.params, t.train_repeat] for t in data.setting.training_tasks]
    payload = json.dumps({"tasks": tasks, "rows": rows}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def dataset_inputs(data, fingerprint: str, train: bool = True) -> tuple[list, dict[str, pd.DataFrame]]:
    """The DatasetInputs of a run on `data` (test, and train unless `train` is False) and their tables."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    tables = {"test": _table(data.test_manifest())}
    digests = {"test": fingerprint}
    if train:
        rows = data.training_manifest()
        tables["train"], digests["train"] = _table(rows), training_digest(data, rows)
    inputs = []
    for context, table in tables.items():
        with warnings.catch_warnings():  # MLflow registers its local source twice and says so on every call
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted", UserWarning)
            dataset = mlflow.data.from_pandas(table, source=data.name, name=data.name, digest=digests[context])
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs, tables


def log_datasets(mlflow, run_id: str, data, fingerprint: str, train: bool = True) -> None:
    """Log the run's test set (digest `fingerprint`) and training data as inputs, and their manifests."""
    from mlflow.exceptions import MlflowException

    inputs, tables = dataset_inputs(data, fingerprint, train)
    for attempt in range(RETRIES):
        try:
            mlflow.log_inputs(run_id, datasets=inputs)
            break
        except MlflowException:  # another run created the same dataset between MLflow's check and insert
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    with tempfile.TemporaryDirectory() as tmp:
        for context, table in tables.items():
            table.to_csv(Path(tmp) / f"{context}_manifest.csv", index=False)
        mlflow.log_artifacts(run_id, tmp, MANIFESTS)
