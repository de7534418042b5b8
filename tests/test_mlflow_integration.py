"""MLflow as its users use it (issue 23): experiment kind, dataset inputs, logged models, the registry."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from mlflow.tracking import MlflowClient

from harness.runs import tracking
from conftest import run_harness
from mlflow_runs import bench_home


def test_a_new_store_is_a_copy_of_mlflows_own_empty_schema(tmp_path, monkeypatch):
    import sqlite3

    from mlflow.store.db.utils import _initialize_tables
    import sqlalchemy

    def schema(path):
        """Alembic revision and every table and index, clauses sorted (MLflow's own migrations write a
        table's constraints in a different order from one run to the next)."""
        with contextlib.closing(sqlite3.connect(path)) as db:
            objects = db.execute("select type, name, sql from sqlite_master").fetchall()
            return (db.execute("select version_num from alembic_version").fetchall(),
                    sorted((kind, name, sorted((sql or "").replace("\n", "").split(","))) for kind, name, sql in objects))

    monkeypatch.setenv("RESTORATION_BENCH_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for database in (first, second):
        client = tracking.client(f"sqlite:///{database}")
        run_id = tracking.start_run(client, "derain", "x", {"setting": "derain"}, {"lr": "0.1"})
        assert client.get_run(run_id).data.params == {"lr": "0.1"}
        assert {e.name for e in client.search_experiments()} == {"Default", "restoration-bench/derain"}
    (template,) = (tmp_path / "cache").glob("mlflow-*-empty.db")
    reference = tmp_path / "reference.db"  # what MLflow's migrations make by themselves
    engine = sqlalchemy.create_engine(f"sqlite:///{reference}")
    _initialize_tables(engine)
    engine.dispose()
    assert schema(template) == schema(reference) == schema(second)
    assert first.stat().st_mode & 0o777 == second.stat().st_mode & 0o777 == 0o666 & ~current_umask()
    (tmp_path / "not-a-folder").write_text("")  # no cache folder: MLflow creates the store as before
    monkeypatch.setenv("RESTORATION_BENCH_CACHE", str(tmp_path / "not-a-folder"))
    third = tmp_path / "c" / "mlflow.db"
    tracking.start_run(tracking.client(f"sqlite:///{third}"), "derain", "x", {}, {})
    assert schema(third)[0] == schema(reference)[0]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_new_experiments_open_on_their_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        experiment = tracking.experiment_id(tracking.client(uri), "derain")
    tags = MlflowClient(uri).get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["setting"] == "derain"


def test_an_existing_experiment_gets_the_kind_when_next_written_to(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.client(uri)  # creates the store only (a copy of MLflow's own empty schema)
    plain = MlflowClient(uri)
    old = plain.create_experiment("restoration-bench/dehaze", artifact_location=(tmp_path / "artifacts").as_uri(),
                                  tags={"setting": "dehaze"})  # as older releases made it
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


# ---- trained models as MLflow models: pyfunc, restore through URIs, the registry ----

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A FINISHED run of the tiny NAFNet on derain, finished by the trials' own finish_run (no Ray, no training)."""
    from harness.data import open_data
    from harness.runs.config import RunConfig
    from harness.runs.submit import run_tags
    from harness.runs.trial import finish_run
    from zoo import create_model

    home = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    run = RunConfig(model="nafnet", setting="derain", efficiency_size=0)
    torch.manual_seed(0)
    network = create_model("nafnet", "tiny")
    with bench_home(home):
        client = tracking.client(uri)
        data = open_data(run.resolved_setting())  # the tags `harness submit` gives, so pages and boards list it
        run_id = tracking.start_run(client, "derain", "nafnet-tiny-derain",
                                    run_tags(run, data.name, data.fingerprint()), run.params())
        started = time.monotonic()
        finish_run(client, run_id, network, run, "cpu")
        client.set_terminated(run_id, "FINISHED")
        failed = tracking.start_run(client, "derain", "broken", {"setting": "derain"}, {})
        client.set_terminated(failed, "FAILED")
    image = home / "mine.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(image)
    return {"home": home, "uri": uri, "run_id": run_id, "failed": failed, "image": image,
            "finish_s": time.monotonic() - started}


def test_a_logged_model_pins_the_installed_versions_without_mlflow_scanning_every_distribution(tmp_path, monkeypatch):
    import importlib_metadata
    from mlflow.utils import requirements_utils

    from harness.runs.models import log_model, model_config, requirements
    from zoo import create_model

    scans = []  # MLflow catches what its requirements check raises, so calls are counted instead
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(importlib_metadata, "packages_distributions", lambda: scans.append(1) or {})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        client = tracking.client(uri)
        run_id = tracking.start_run(client, "derain", "requirements", {}, {})
        log_model(uri, run_id, create_model("nafnet", "tiny"), model_config("nafnet", "tiny", {}, "derain"), step=0)
    logged = client.download_artifacts(run_id, "model/requirements.txt", str(tmp_path))
    pinned = Path(logged).read_text().split()
    assert set(requirements()) <= set(pinned) and any(r.startswith("torch==") for r in pinned)
    assert not scans, "MLflow scanned every installed distribution while logging the model"
    assert requirements_utils._MODULES_TO_PACKAGES is None  # MLflow's own inference elsewhere still builds the map


def restored_by_cli(args: list[str], home: Path, output: Path) -> np.ndarray:
    """`harness restore ARGS --output OUTPUT` as a user runs it; the PNG it wrote as floats in [0, 1]."""
    result = run_harness(["restore", *args, "--output", str(output)], home, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return np.asarray(Image.open(output), dtype=np.float32) / 255.0


@pytest.mark.slow
def test_the_logged_model_restores_as_harness_restore_does(finished):
    import mlflow.pyfunc

    home, run_id = finished["home"], finished["run_id"]
    client = MlflowClient(finished["uri"])
    run = client.get_run(run_id)
    (output,) = run.outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.name == "model" and logged.source_run_id == run_id
    assert {m.key for m in logged.metrics} >= {"psnr/avg", "ssim/derain"}  # linked to the run's final metrics
    mlflow.set_tracking_uri(finished["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    spec = model.metadata.get_input_schema().inputs[0]
    assert spec.type == np.dtype(np.float32) and spec.shape == (-1, 3, -1, -1)
    assert model.metadata.get_output_schema().inputs[0].shape == (-1, 3, -1, -1)
    assert model.metadata.saved_input_example_info is not None

    by_run = restored_by_cli(["--run", run_id, "--input", str(finished["image"])], home, home / "by_run.png")
    pixels = np.asarray(Image.open(finished["image"]), dtype=np.float32) / 255.0
    predicted = model.predict(pixels.transpose(2, 0, 1)[None].copy())
    assert predicted.shape == (1, 3, 37, 45) and predicted.dtype == np.float32
    assert np.abs(np.round(predicted[0].transpose(1, 2, 0) * 255) / 255 - by_run).max() <= 1e-6
    by_uri = restored_by_cli(["--run", f"runs:/{run_id}/model", "--input", str(finished["image"])], home,
                             home / "by_uri.png")
    assert np.array_equal(by_uri, by_run)


@pytest.mark.slow
def test_register_creates_a_version_with_its_alias_and_restore_reads_it(finished):
    home, run_id = finished["home"], finished["run_id"]
    result = run_harness(["register", "--run", run_id, "--name", "derain-nafnet", "--alias", "champion"], home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "models:/derain-nafnet/1" in result.stdout and "models:/derain-nafnet@champion" in result.stdout
    version = MlflowClient(finished["uri"]).get_model_version_by_alias("derain-nafnet", "champion")
    assert str(version.version) == "1" and version.run_id == run_id and version.tags["setting"] == "derain"
    by_alias = restored_by_cli(["--run", "models:/derain-nafnet@champion", "--input", str(finished["image"])], home,
                               home / "by_alias.png")
    by_run = restored_by_cli(["--run", run_id, "--input", str(finished["image"])], home, home / "by_run2.png")
    assert np.array_equal(by_alias, by_run)


@pytest.mark.slow
def test_evaluate_scores_a_logged_model_as_its_run_was_scored_and_does_not_count_it_twice(finished):
    home, run_id = finished["home"], finished["run_id"]
    uri = f"runs:/{run_id}/model"
    result = run_harness(["evaluate", "--weights", uri, "--setting", "derain", "--efficiency-size", "0",
                          "--no-save-outputs"], home, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient(finished["uri"])
    source = client.get_run(run_id)
    (run,) = [r for r in client.search_runs([source.info.experiment_id], "tags.entry = 'logged-model'")]
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["model"] == "nafnet" and tags["variant"] == "tiny"
    assert tags["logged_model.uri"] == uri and tags["logged_model.source_run"] == run_id
    assert tags["logged_model.id"] == source.outputs.model_outputs[0].model_id
    assert run.data.params["run.command"] == f"harness evaluate --weights {uri} --setting derain --no-save-outputs"
    for key in ("psnr/avg", "ssim/avg", "psnr/derain"):  # the same network on the same images: the same numbers
        assert abs(run.data.metrics[key] - source.data.metrics[key]) <= 1e-6, key
    board = run_harness(["leaderboard", "--setting", "derain", "--format", "json"], home)
    assert board.returncode == 0, board.stderr[-2000:]
    rows = [row for row in json.loads(board.stdout)["rows"] if row["model"] == "nafnet"]
    # the same network on its own setting is not a second entry: the trained run stands for it, once
    assert [(row["entry"], row["run_id"], row["runs"]) for row in rows] == [("trained", run_id, 1)], rows


@pytest.mark.slow
def test_bad_input_to_register_and_restore_is_one_line_and_exit_2(finished):
    home = finished["home"]
    missing = run_harness(["restore", "--run", "models:/no-such-model/3", "--input", str(finished["image"])], home)
    assert missing.returncode == 2 and "models:/no-such-model/3" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    nothing = run_harness(["evaluate", "--weights", "models:/no-such-model@champion", "--setting", "derain"], home)
    assert nothing.returncode == 2 and "models:/no-such-model@champion" in nothing.stderr
    assert len(nothing.stderr.strip().splitlines()) == 1 and "Traceback" not in nothing.stderr
    failed = run_harness(["register", "--run", finished["failed"], "--name", "x"], home)
    assert failed.returncode == 2 and "FAILED" in failed.stderr and finished["failed"] in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert MlflowClient(finished["uri"]).search_registered_models(filter_string="name = 'x'") == []


def test_a_tracking_uri_that_does_not_answer_is_one_line_within_10_s_and_writes_nothing(harness_home):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    for args in (["submit", "--model", "identity", "--setting", "derain"], ["leaderboard", "--setting", "derain"],
                 ["register", "--run", "0" * 32, "--name", "x"]):
        started = time.monotonic()
        result = run_harness([*args, "--tracking-uri", uri], harness_home, timeout=60)
        assert time.monotonic() - started < 10, args
        assert result.returncode == 2 and uri in result.stderr, (args, result.stderr[-2000:])
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(harness_home.iterdir()) == []  # no store, no Ray results, no artifacts


@pytest.mark.slow
def test_the_dashboards_run_details_link_to_the_logged_model_and_its_registered_version(finished, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from harness.runs.register import register_run

    run_id, uri = finished["run_id"], finished["uri"]
    done = register_run(run_id, "dashboard-model", uri, alias="staging")
    (output,) = MlflowClient(uri).get_run(run_id).outputs.model_outputs
    experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RESTORATION_BENCH_MLFLOW_UI", "http://mlflow.example:5000")
    st.cache_data.clear()  # the cache outlives an AppTest (streamlit#9139)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "dashboards" / "app.py"), default_timeout=240)
    at.session_state["setting"] = "derain"
    at.run()
    at.switch_page("views/run.py").run()
    at.selectbox(key="details-run").set_value(run_id).run()
    assert not at.exception, [e.value for e in at.exception]
    urls = {b.proto.label: b.proto.url for b in at.get("link_button")}
    ui = "http://mlflow.example:5000/#"
    assert urls["Open the MLflow model logged by this run"] == (
        f"{ui}/experiments/{experiment}/models/{output.model_id}?workflowType=machine_learning")
    assert urls[f"Registered: models:/dashboard-model/{done.version}  @staging"] == \
        f"{ui}/models/dashboard-model/versions/{done.version}"
    assert any(f"runs:/{run_id}/model" in t.value for t in at.text)
    st.cache_data.clear()


class _Planted:
    """A pickle that creates a folder when it is loaded: what anyone who can write to a store could plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_restoring_reads_a_logged_models_data_files_and_never_unpickles_what_the_store_holds(tmp_path):
    import mlflow.pyfunc

    from harness.runs.models import load_logged, log_model, model_config
    from harness.runs.register import register_run
    from zoo import create_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        client = tracking.client(uri)
        run_id = tracking.start_run(client, "derain", "x", {"setting": "derain"}, {})
        torch.manual_seed(0)
        network = create_model("nafnet", "tiny").eval()
        config = model_config("nafnet", "tiny", {}, "derain")
        log_model(uri, run_id, network, config, step=1)
        client.set_terminated(run_id, "FINISHED")
        register_run(run_id, "planted", uri, alias="champion")
    marker = tmp_path / "planted-code-ran"
    for pickled in tmp_path.rglob("python_model.pkl"):  # the run's model (a registered version points at it)
        pickled.write_bytes(__import__("pickle").dumps(_Planted(marker)))
    image = torch.rand(1, 3, 32, 32)
    for model_uri in (f"runs:/{run_id}/model", "models:/planted@champion", "models:/planted/1"):
        logged = load_logged(model_uri, uri)
        assert not marker.exists(), model_uri
        assert logged.config == config and logged.source_run == run_id and logged.setting.name == "derain"
        with torch.no_grad():
            assert torch.equal(logged.network(image), network(image))
    with contextlib.suppress(Exception):  # MLflow's own loader does run it: the test's pickle is live
        mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert marker.exists()
    for config_file in tmp_path.rglob("config.json"):
        config_file.unlink()
    with pytest.raises(ValueError, match=r"runs:/\w+/model is not a model logged by the harness .*\['config', 'weights'\]"):
        load_logged(f"runs:/{run_id}/model", uri)
    with pytest.raises(ValueError, match="no MLflow model at models:/absent/1 in sqlite"):
        load_logged("models:/absent/1", uri)
    elsewhere = tmp_path / "typo" / "mlflow.db"  # a store that does not exist is named, not created
    with pytest.raises(ValueError, match=f"no MLflow model at models:/planted/1: there is no tracking store at {elsewhere}"):
        load_logged("models:/planted/1", f"sqlite:///{elsewhere}")
    assert not elsewhere.parent.exists()
