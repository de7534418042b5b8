"""MLflow as its users use it (issue 23): experiment kind, dataset inputs, logged models, the registry."""
from __future__ import annotations

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
