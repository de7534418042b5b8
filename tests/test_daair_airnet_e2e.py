"""`harness submit` of DaAIR, AirNet and AirNet-HAIR: Ray, MLflow, both training stages, the leaderboard."""
import json

import pytest
from mlflow.tracking import MlflowClient

from conftest import run_harness

pytestmark = pytest.mark.slow  # starts Ray: not in the fast tier

MODELS = ("daair", "airnet", "airnet_hair")
STEPS = 12  # AirNet's tiny warm-up is 15% of them: 2 contrastive steps, then 10 joint ones
IDENTITY_MARGIN_DB = 4.0  # 12 steps end 0.9-2.9 dB under the identity floor (measured); all-black is 11.4 under


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store with a short three_deg run of each model, and the identity floor on the same data."""
    home = tmp_path_factory.mktemp("zoo2")
    runs = {m: run_harness(["submit", "--model", m, "--setting", "three_deg", "--profile", "smoke",
                            "--steps", str(STEPS)], home) for m in ("identity", *MODELS)}
    return home, runs


def finished_runs(home):
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("restoration-bench/three_deg")
    return client, {r.data.tags["model"]: r for r in client.search_runs([experiment.experiment_id])}


def test_each_model_finishes_and_reaches_the_leaderboard(store):
    home, runs = store
    for name, result in runs.items():
        assert result.returncode == 0, name + result.stdout[-2000:] + result.stderr[-2000:]
    board = json.loads(run_harness(["leaderboard", "--setting", "three_deg", "--format", "json"], home).stdout)
    ranked = {row["model"]: row for row in board["rows"] if row["source"] == "reproduced"}
    assert set(MODELS) | {"identity"} == set(ranked)
    # The floor is the unrestored input on the same test images (19.17 dB). Twelve steps do not
    # reach it: measured daair 17.92, airnet 16.31, airnet_hair 16.34 dB. An all-black output
    # scores 7.8 dB, so a margin of IDENTITY_MARGIN_DB under the input tells a model that trained
    # from one whose output collapsed.
    floor = ranked["identity"]["average"]["psnr"]
    scores = {name: round(ranked[name]["average"]["psnr"], 3) for name in MODELS}
    for name in MODELS:
        assert ranked[name]["average"]["psnr"] > floor - IDENTITY_MARGIN_DB, (floor, scores)


def test_auxiliary_losses_are_logged_separately(store):
    home, _ = store
    client, runs = finished_runs(home)
    assert all(runs[m].info.status == "FINISHED" for m in MODELS)
    daair = runs["daair"]
    assert daair.data.params["model.degradation_types"] == "3"  # haze, rain, noise in three_deg
    assert {"train/loss_pixel", "train/loss_routing"} <= set(daair.data.metrics)
    for name in ("airnet", "airnet_hair"):
        history = client.get_metric_history(runs[name].info.run_id, "train/loss_contrastive")
        pixel = client.get_metric_history(runs[name].info.run_id, "train/loss_pixel")
        # Logged in the warm-up (contrastive only, step 2) and in the joint stage (with the L1 term).
        assert 2 in {m.step for m in history} and 2 not in {m.step for m in pixel}
        assert {m.step for m in pixel} and {m.step for m in pixel} <= {m.step for m in history}
