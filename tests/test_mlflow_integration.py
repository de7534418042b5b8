"""MLflow as its users use it (issue 23): experiment kind, dataset inputs, logged models, the registry."""
from __future__ import annotations

import json

import pandas as pd
from mlflow.tracking import MlflowClient

from harness.runs import tracking
from mlflow_runs import bench_home


def test_new_experiments_open_on_their_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        experiment = tracking.experiment_id(tracking.client(uri), "derain")
    tags = MlflowClient(uri).get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["setting"] == "derain"


def test_an_existing_experiment_gets_the_kind_when_next_written_to(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plain = MlflowClient(uri)
    old = plain.create_experiment("restoration-bench/dehaze", tags={"setting": "dehaze"})  # as older releases made it
    assert "mlflow.experimentKind" not in plain.get_experiment(old).tags
    with bench_home(tmp_path):
        client = tracking.client(uri)
        tracking.start_run(client, "dehaze", "a-run", {"setting": "dehaze"}, {})
    assert plain.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def dataset_inputs_of(client: MlflowClient, run_id: str) -> dict[str, object]:
    """A run's dataset inputs by their context tag (test, train)."""
    inputs = client.get_run(run_id).inputs.dataset_inputs
    return {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}


def test_a_run_logs_its_test_set_with_the_fingerprint_as_digest_and_its_training_data(tmp_path):
    from harness.data import open_data
    from harness.runs.datasets import log_datasets
    from harness.settings import get_setting

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = open_data(get_setting("derain"))
    with bench_home(tmp_path):
        client = tracking.client(uri)
        run_id = tracking.start_run(client, "derain", "a-run", {"data_fingerprint": data.fingerprint()}, {})
        log_datasets(client, run_id, data, data.fingerprint())
        log_datasets(client, run_id, data, data.fingerprint())  # a retried trial logs again: no duplicate
        other = tracking.start_run(client, "derain", "b-run", {}, {})
        log_datasets(client, other, data, data.fingerprint())  # a second run reuses the dataset
        datasets = dataset_inputs_of(client, run_id)
        assert len(client.get_run(run_id).inputs.dataset_inputs) == 2
        assert set(datasets) == {"test", "train"}
        assert datasets["test"].digest == data.fingerprint() and datasets["test"].name == "embedded"
        assert json.loads(datasets["test"].profile)["num_rows"] == 7  # one derain input per photograph
        assert datasets["train"].digest != data.fingerprint() and len(datasets["train"].digest) == 16
        assert dataset_inputs_of(client, other)["test"].digest == data.fingerprint()
        manifest = client.download_artifacts(run_id, "datasets/test_manifest.csv", str(tmp_path))
    rows = pd.read_csv(manifest)
    assert list(rows.columns) == ["task", "image", "degraded", "target"] and len(rows) == 7
    assert set(rows["task"]) == {"derain"} and "astronaut" in set(rows["image"])
