"""The direct SQLite reader of the leaderboards gives what MLflow's client gives, on stores MLflow wrote."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from harness.runs import tracking
from leaderboards import board as board_module
from leaderboards import levels as levels_module
from leaderboards.board import build_board
from leaderboards.readers import MlflowReader, SqliteReader, _Checked, local_folder, open_reader

TAGS = {"setting": "derain", "setting_version": "1", "variant": "tiny", "profile": "smoke",
        "data_source": "embedded", "data_fingerprint": "f" * 16}


def _run(client: MlflowClient, experiment: str, model: str, psnr: list[float], status: str = "FINISHED",
         **tags: str) -> str:
    """A derain run of `model` logged as a trial logs it: metrics at two steps, per-image scores, params."""
    run = client.create_run(experiment, tags={**TAGS, "model": model, **tags})
    run_id = run.info.run_id
    client.log_param(run_id, "profile.steps", "20")
    client.log_param(run_id, "profile.batch_size", "4")
    tracking.log_metrics(client, run_id, {"psnr/avg": 1.0, "train.loss": 0.5}, step=1)  # superseded below
    tracking.log_metrics(client, run_id, {"psnr/derain": float(np.mean(psnr)), "ssim/derain": 0.8,
                                          "psnr/avg": float(np.mean(psnr)), "ssim/avg": 0.8,
                                          "train.loss": math.nan}, step=2)
    tracking.log_json(client, run_id, {"derain": {f"{i}.png": {"psnr": p, "ssim": 0.8} for i, p in enumerate(psnr)}},
                      "per_image.json", "results")
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A store with finished, killed, deleted and other-setting runs, and a seeded entry (the tests only read it)."""
    folder = tmp_path_factory.mktemp("readers")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = tracking.client(uri)  # MLflow's own empty schema, copied (harness/runs/tracking.py)
    derain = client.create_experiment("restoration-bench/derain",
                                      artifact_location=(folder / "artifacts").as_uri())
    rng = np.random.default_rng(0)
    for index, model in enumerate(["nafnet", "restormer", "identity", "nafnet", "promptir"]):
        _run(client, derain, model, list(rng.normal(25 + index, 1.0, 12)))
    _run(client, derain, "airnet", [40.0] * 12, status="KILLED")  # never on a board
    deleted = _run(client, derain, "daair", [41.0] * 12)
    client.delete_run(deleted)
    _run(client, derain, "hyperres", [42.0] * 12, setting="dehaze")  # tagged for another setting
    parent = client.create_run(derain, tags={**TAGS, "model": "res_hair", "role": "seeds"}).info.run_id
    for seed in (0, 1):
        _run(client, derain, "res_hair", list(rng.normal(27 + seed, 1.0, 12)), seed=str(seed), seed_parent=parent)
    client.set_terminated(parent, "FINISHED")
    return uri


def _path(uri: str):
    from pathlib import Path

    return Path(uri[len("sqlite:///"):])


def test_direct_reader_returns_mlflow_runs(store):
    direct = SqliteReader(_path(store), store).finished_runs("derain")
    through_mlflow = MlflowReader(store).finished_runs("derain")
    assert [r.info.run_id for r in direct] == [r.info.run_id for r in through_mlflow]
    assert len(direct) == 8  # 5 runs, 2 seeds, the seeds' parent; not the killed, deleted or dehaze ones
    for mine, theirs in zip(direct, through_mlflow):
        assert mine.data.tags == theirs.data.tags and mine.data.params == theirs.data.params
        assert mine.data.metrics.keys() == theirs.data.metrics.keys()
        for key, value in theirs.data.metrics.items():
            assert mine.data.metrics[key] == value or (math.isnan(value) and math.isnan(mine.data.metrics[key]))
        assert (mine.info.run_name, mine.info.experiment_id, mine.info.start_time, mine.info.status) == (
            theirs.info.run_name, theirs.info.experiment_id, theirs.info.start_time, theirs.info.status)
    assert all(r.data.metrics["psnr/avg"] > 20 for r in direct if "psnr/avg" in r.data.metrics)  # the latest step
    assert SqliteReader(_path(store), store).finished_runs("five_deg") == []


def test_direct_reader_reads_per_image_scores_from_the_artifact_folder(store):
    direct, through_mlflow = SqliteReader(_path(store), store), MlflowReader(store)
    ids = [r.info.run_id for r in through_mlflow.finished_runs("derain")]
    for run_id in ids:
        assert direct.per_image(run_id) == through_mlflow.per_image(run_id)
    assert sum(direct.per_image(r) is None for r in ids) == 1  # the seeds' parent has no scores of its own


def test_board_is_the_same_through_either_reader(store, monkeypatch):
    direct = build_board("derain", store, source="reproduced")
    monkeypatch.setattr(board_module, "open_reader", MlflowReader)
    through_mlflow = build_board("derain", store, source="reproduced")
    rows = direct.reproduced
    assert sorted(rows["model"]) == ["identity", "nafnet", "promptir", "res_hair", "restormer"]
    assert rows["psnr/avg"].is_monotonic_decreasing and rows.set_index("model").at["res_hair", "seeds"] == 2
    pd.testing.assert_frame_equal(direct.reproduced, through_mlflow.reproduced)
    assert direct.per_image == through_mlflow.per_image


def test_level_board_is_the_same_through_either_reader(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment = client.create_experiment("restoration-bench/hyperres_noise",
                                          artifact_location=(tmp_path / "artifacts").as_uri())
    levels = {"noise15": 15.0, "noise50": 50.0}
    for model, shift, tags in [("hyperres", 0.0, {}), ("nafnet", -1.0, {"dedicated_level": "15"}),
                               ("nafnet", -2.0, {"dedicated_level": "50"})]:
        run = client.create_run(experiment, tags={**TAGS, "setting": "hyperres_noise", "model": model, **tags})
        tracking.log_metrics(client, run.info.run_id, {"psnr/avg": 30 + shift, "ssim/avg": 0.9,
                             **{f"psnr/{t}": 31 + shift - level / 10 for t, level in levels.items()},
                             **{f"ssim/{t}": 0.9 for t in levels}}, step=1)
        client.set_terminated(run.info.run_id, "FINISHED")
    direct = levels_module.level_board("hyperres_noise", uri, levels, (15.0, 50.0), 1)
    monkeypatch.setattr(levels_module, "open_reader", MlflowReader)
    assert direct == levels_module.level_board("hyperres_noise", uri, levels, (15.0, 50.0), 1)
    assert direct["boards"]


def test_unrecognised_store_falls_back_to_mlflow(store, monkeypatch):
    """A store the direct reader cannot read (here: a table it expects is missing) is read through MLflow."""
    from leaderboards.readers import UnreadableStore

    reader = open_reader(store)
    assert isinstance(reader, _Checked) and isinstance(reader.reader, SqliteReader)

    def missing_table(self, sql, parameters=()):
        raise UnreadableStore("no such table: latest_metrics")

    monkeypatch.setattr(SqliteReader, "_query", missing_table)
    assert len(reader.finished_runs("derain")) == 8 and isinstance(reader.reader, MlflowReader)
    assert isinstance(open_reader("http://127.0.0.1:9"), MlflowReader)  # a server: MLflow's client (no request yet)


@pytest.mark.parametrize("uri, expected", [("/srv/a b/artifacts", "/srv/a b/artifacts"),
                                           ("file:///srv/a%20b/artifacts", "/srv/a b/artifacts"),
                                           ("mlflow-artifacts:/1/abc/artifacts", None), ("s3://bucket/x", None),
                                           (None, None)])
def test_local_folder_of_artifact_uris(uri, expected):
    folder = local_folder(uri)
    assert (str(folder) if folder else None) == expected


def test_level_board_folds_the_seeds_of_an_entry_into_their_mean(tmp_path):
    from leaderboards.levels import level_board

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment = client.create_experiment("restoration-bench/hyperres_noise",
                                          artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(experiment, tags={**TAGS, "setting": "hyperres_noise", "model": "hyperres",
                                                 "role": "seeds"}).info.run_id
    for seed, psnr in ((0, 30.0), (1, 32.0), (2, 31.0)):  # a lucky seed must not stand for the entry
        run = client.create_run(experiment, tags={**TAGS, "setting": "hyperres_noise", "model": "hyperres",
                                                  "seed": str(seed), "seed_parent": parent})
        tracking.log_metrics(client, run.info.run_id, {"psnr/avg": psnr, "psnr/noise15": psnr + 1, "ssim/avg": 0.9},
                             step=1)
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    (entry,) = level_board("hyperres_noise", uri, {"noise15": 15.0}, (15.0, 50.0), 1)["boards"]
    assert entry["run_id"] == parent and entry["seeds"] == 3
    assert entry["average_psnr"] == pytest.approx(31.0) and entry["rows"][0]["psnr"] == pytest.approx(32.0)
