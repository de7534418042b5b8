"""`harness submit` and `harness leaderboard` as a new user runs them: Ray, MLflow, real training."""
import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import harness_main, run_harness
from test_settings_and_data import identity_expectations


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store in which the module's runs accumulate, as on a user's machine."""
    home = tmp_path_factory.mktemp("bench")
    runs = {
        "identity": run_harness(["submit", "--model", "identity", "--setting", "three_deg"], home),
        "nafnet": run_harness(["submit", "--model", "nafnet", "--setting", "three_deg"], home),
        # a configuration that cannot be built: the trial crashes inside Ray
        "broken": run_harness(["submit", "--model", "nafnet", "--setting", "three_deg", "--option", "width=-4"], home),
    }
    return home, runs


def mlflow_client(home):
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def runs_by_model(home):
    client = mlflow_client(home)
    experiment = client.get_experiment_by_name("restoration-bench/three_deg")
    return {r.data.tags["model"] + ("-broken" if r.data.params.get("model.width") == "-4" else ""): r
            for r in client.search_runs([experiment.experiment_id])}


@pytest.mark.slow
def test_submit_finishes_and_records_a_complete_run(store):
    home, runs = store
    for name in ("identity", "nafnet"):
        assert runs[name].returncode == 0, runs[name].stdout[-3000:] + runs[name].stderr[-3000:]
        assert "Leaderboard three_deg v1" in runs[name].stdout
    run = runs_by_model(home)["nafnet"]
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["setting_version"] == "1" and tags["data_source"] == "embedded"
    assert len(tags["data_fingerprint"]) == 16 and tags["git_commit"] != ""
    assert tags["version.torch"] and tags["version.ray"] and tags["version.mlflow"]
    assert params["profile.steps"] == "600" and params["model.width"] == "16" and params["protocol.ssim"] == "ssim"
    for task in ("dehaze", "derain", "denoise_15", "denoise_25", "denoise_50", "avg"):
        assert f"psnr/{task}" in metrics and f"ssim/{task}" in metrics
    history = mlflow_client(home).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 10
    artifacts = {a.path for a in mlflow_client(home).list_artifacts(run.info.run_id)}
    assert {"checkpoint", "samples", "results", "datasets"} <= artifacts
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}  # issue 23: the Dataset column
    assert inputs["test"].digest == tags["data_fingerprint"] and inputs["test"].name == "embedded"
    assert set(inputs) == {"test", "train"}


@pytest.mark.slow
def test_identity_run_reproduces_noise_physics(store):
    home, _ = store
    metrics = runs_by_model(home)["identity"].data.metrics
    for task, expected in identity_expectations("three_deg").items():
        assert metrics[f"psnr/{task}"] == pytest.approx(expected, abs=0.05)


@pytest.mark.slow
def test_trained_baseline_beats_identity_under_the_default_profile(store):
    home, _ = store
    runs = runs_by_model(home)
    assert runs["nafnet"].data.metrics["psnr/avg"] > runs["identity"].data.metrics["psnr/avg"] + 1.0


@pytest.mark.slow
def test_crashed_run_is_failed_in_mlflow_and_absent_from_the_leaderboard(store):
    home, runs = store
    assert runs["broken"].returncode == 1
    assert "error:" in runs["broken"].stderr and "Traceback" not in runs["broken"].stderr.split("error:")[-1]
    broken = runs_by_model(home)["nafnet-broken"]
    assert broken.info.status == "FAILED" and broken.data.tags.get("error")
    board = json.loads(run_harness(["leaderboard", "--setting", "three_deg", "--format", "json"], home).stdout)
    assert broken.info.run_id not in {row["run_id"] for row in board["rows"]}


@pytest.mark.slow
def test_leaderboard_json_ranks_both_models_with_per_task_numbers(store):
    home, _ = store
    result = run_harness(["leaderboard", "--setting", "three_deg", "--format", "json"], home)
    assert result.returncode == 0, result.stderr
    board = json.loads(result.stdout)
    assert [row["model"] for row in board["rows"]] == ["nafnet", "identity"]
    runs = runs_by_model(home)
    for row in board["rows"]:
        metrics = runs[row["model"]].data.metrics
        assert set(row["tasks"]) == {"dehaze", "derain", "denoise_15", "denoise_25", "denoise_50"}
        for task, values in row["tasks"].items():
            assert values["psnr"] == pytest.approx(metrics[f"psnr/{task}"])
        assert row["average"]["psnr"] == pytest.approx(np.mean([v["psnr"] for v in row["tasks"].values()]))
    csv = run_harness(["leaderboard", "--setting", "three_deg", "--format", "csv"], home).stdout
    assert csv.splitlines()[0].startswith("rank,model,variant")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["submit", "--model", "nafnett", "--setting", "three_deg"], "Did you mean 'nafnet'"),
        (["submit", "--model", "nafnet", "--setting", "3deg"], "Valid settings: deblur, dehaze"),
        (["submit", "--model", "nafnet", "--setting", "three_deg", "--profile", "quick"], "Valid profiles"),
        (["list", "model"], "Did you mean 'models'"),
        (["leaderboard", "--setting", "five"], "Valid settings"),
    ],
)
def test_unknown_names_exit_non_zero_with_the_valid_names(args, expected, harness_home):
    result = harness_main(args, harness_home)  # in process: the console script's own main
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_model_is_one_line_from_the_console_script(harness_home):
    result = run_harness(["submit", "--model", "nafnett", "--setting", "three_deg"], harness_home, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if "Did you mean 'nafnet'" in line]


def test_list_as_json(harness_home):
    models = json.loads(run_harness(["list", "models", "--format", "json"], harness_home).stdout)
    assert {"identity", "nafnet"} <= {m["name"] for m in models}
    settings = json.loads(run_harness(["list", "settings", "--format", "json"], harness_home).stdout)
    assert {s["name"]: s["version"] for s in settings}["five_deg"] == 1


@pytest.mark.slow
def test_res_hair_on_five_deg_runs_and_reaches_the_leaderboard(harness_home):
    """The README's main job, on the smoke budget: Res-HAIR through Ray into MLflow and the board."""
    result = run_harness(["submit", "--model", "res_hair", "--setting", "five_deg", "--profile", "smoke",
                          "--option", "candidates=[2, 3, 3, 4]"], harness_home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    board = json.loads(run_harness(["leaderboard", "--setting", "five_deg", "--format", "json"], harness_home).stdout)
    (row,) = board["rows"]
    assert row["model"] == "res_hair"
    assert set(row["tasks"]) == {"dehaze", "derain", "denoise_25", "deblur", "lowlight"}
    client = mlflow_client(harness_home)
    (run,) = client.search_runs([client.get_experiment_by_name("restoration-bench/five_deg").experiment_id])
    assert run.info.status == "FINISHED"
    params = run.data.params
    # nested model options are recorded field by field
    assert params["model.host.width"] == "8" and params["model.candidates"] == "[2, 3, 3, 4]"
