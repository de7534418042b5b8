"""`harness leaderboard` on real MLflow runs: rankings per test set, bootstrap intervals, papers side by side."""
import io
import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.runs import tracking
from leaderboards.artifacts import per_image_metrics
from leaderboards.board import differences
from harness.settings import get_setting
from leaderboards import bootstrap
from leaderboards.bootstrap import paired_difference, run_intervals
from mlflow_runs import bench_home, evaluation, log_run
from zoo import parameter_count

SETTING = "five_deg"
REAL = "/data/benchmarks"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite store with finished runs on the embedded suite and on 'real data', plus a failed run."""
    home = tmp_path_factory.mktemp("board")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    identity, nafnet = evaluation(SETTING, "identity"), evaluation(SETTING, "nafnet")
    with bench_home(home):
        ids = {
            "identity": log_run(uri, SETTING, "identity", identity),
            "nafnet": log_run(uri, SETTING, "nafnet", nafnet,
                              extra_metrics={"efficiency.macs": 2.5e9, "efficiency.latency_ms": 12.5}),
            # identity does not train: its scores are the same under every profile
            "identity-smoke": log_run(uri, SETTING, "identity", identity, profile="smoke"),
            "identity-real": log_run(uri, SETTING, "identity", identity, data_source=REAL, fingerprint="f" * 16,
                                     extra_metrics={"efficiency.params": 0}),
            "failed": log_run(uri, SETTING, "identity", identity, run_name="crashed", status="FAILED"),
            # the same scores as "nafnet", logged later: were versions mixed, it would stand for nafnet (ties: latest)
            "old-version": log_run(uri, SETTING, "nafnet", nafnet,
                                   extra_tags={"setting_version": str(get_setting(SETTING).version - 1)}),
        }
    return uri, ids


def board(capsys, uri, *args):
    assert main(["leaderboard", "--setting", SETTING, "--tracking-uri", uri, *args]) == 0
    return capsys.readouterr().out


def json_board(capsys, uri, *args):
    return json.loads(board(capsys, uri, "--format", "json", *args))


def test_runs_on_the_embedded_suite_and_on_real_data_are_ranked_apart(capsys, store):
    uri, ids = store
    rows = json_board(capsys, uri)["rows"]
    assert [(r["ranking"].split(" (")[0], r["rank"], r["model"]) for r in rows] == [
        (f"real data {REAL}", 1, "identity"),
        ("embedded synthetic suite", 1, "identity"),
        ("embedded synthetic suite", 2, "nafnet"),
    ]
    assert {r["data_source"] for r in rows} == {"embedded", REAL}
    assert ids["failed"] not in {r["run_id"] for r in rows}
    embedded = [r for r in rows if r["data_source"] == "embedded"]
    # two identity runs with equal scores: the latest stands for the model
    assert embedded[0]["runs"] == 2 and embedded[0]["run_id"] == ids["identity-smoke"]


def test_each_reproduced_number_carries_the_interval_of_its_logged_per_image_metrics(capsys, store):
    uri, ids = store
    rows = json_board(capsys, uri)["rows"]
    tasks = ["dehaze", "derain", "denoise_25", "deblur", "lowlight"]
    client = MlflowClient(uri)
    for row in rows:
        scores = per_image_metrics(client, row["run_id"])
        metrics = client.get_run(row["run_id"]).data.metrics
        assert row["images_per_task"] == 7
        for task in tasks:
            cell = row["tasks"][task]
            mean = np.mean([s["psnr"] for s in scores[task].values()])
            assert cell["psnr"] == pytest.approx(metrics[f"psnr/{task}"]) == pytest.approx(mean)
            low, high = cell["psnr_ci95"]
            assert low < cell["psnr"] < high and high - low > 0.01
            assert cell["ssim_ci95"][0] < cell["ssim"] < cell["ssim_ci95"][1]
        expected = run_intervals(scores, tasks)["avg"]
        assert row["average"]["psnr_ci95"] == pytest.approx([expected.low, expected.high])
        # the average's interval is narrower than the widest task's: tasks are resampled independently
        widest = max(row["tasks"][t]["psnr_ci95"][1] - row["tasks"][t]["psnr_ci95"][0] for t in tasks)
        assert row["average"]["psnr_ci95"][1] - row["average"]["psnr_ci95"][0] < widest


def test_intervals_are_2000_resamples_with_seed_0(capsys, store):
    """The README's bootstrap: the board's intervals are exactly those of 2,000 resamples drawn with seed 0."""
    uri, _ = store
    assert (bootstrap.RESAMPLES, bootstrap.SEED) == (2000, 0)
    rows = [r for r in json_board(capsys, uri)["rows"] if r["data_source"] == "embedded"]
    tasks = ["dehaze", "derain", "denoise_25", "deblur", "lowlight"]
    client = MlflowClient(uri)
    scores = [per_image_metrics(client, row["run_id"]) for row in rows]
    for row, per_image in zip(rows, scores):
        explicit = run_intervals(per_image, tasks, resamples=2000, seed=0)
        assert row["average"]["psnr_ci95"] == [explicit["avg"].low, explicit["avg"].high]
        assert row["tasks"]["derain"]["psnr_ci95"] == [explicit["derain"].low, explicit["derain"].high]
        for other in (run_intervals(per_image, tasks, resamples=2000, seed=1),
                      run_intervals(per_image, tasks, resamples=1000, seed=0)):
            assert row["average"]["psnr_ci95"] != [other["avg"].low, other["avg"].high]
    lead = paired_difference(scores[0], scores[1], tasks, resamples=2000, seed=0)
    assert rows[0]["lead_over_next"]["psnr_ci95"] == [lead.low, lead.high]
    other = paired_difference(scores[0], scores[1], tasks, resamples=2000, seed=1)
    assert rows[0]["lead_over_next"]["psnr_ci95"] != [other.low, other.high]


def test_runs_of_another_setting_version_are_not_ranked(capsys, store):
    """Leaderboards compare runs of one setting version: a run tagged with another version is left out."""
    uri, ids = store
    version = get_setting(SETTING).version
    assert MlflowClient(uri).get_run(ids["old-version"]).data.tags["setting_version"] == str(version - 1)
    for pick in ("best", "latest"):
        rows = json_board(capsys, uri, "--pick", pick)["rows"]
        assert ids["old-version"] not in {r["run_id"] for r in rows}
        (nafnet,) = [r for r in rows if r["model"] == "nafnet"]
        assert nafnet["run_id"] == ids["nafnet"] and nafnet["runs"] == 1


def test_lead_over_the_next_row_is_a_paired_interval(capsys, store):
    uri, _ = store
    rows = [r for r in json_board(capsys, uri)["rows"] if r["data_source"] == "embedded"]
    lead = rows[0]["lead_over_next"]
    assert lead["over"] == "nafnet" and lead["clear"] is True
    assert lead["psnr"] == pytest.approx(rows[0]["average"]["psnr"] - rows[1]["average"]["psnr"])
    assert lead["psnr_ci95"][0] > 0
    assert rows[1]["lead_over_next"] is None


def test_efficiency_columns_come_from_the_run_or_the_zoo(capsys, store):
    uri, _ = store
    rows = {(r["model"], r["data_source"]): r for r in json_board(capsys, uri)["rows"]}
    nafnet = rows[("nafnet", "embedded")]
    assert nafnet["params"] == parameter_count("nafnet", "tiny") and nafnet["params_source"] == "zoo"
    assert nafnet["macs"] == 2.5e9 and nafnet["latency_ms"] == 12.5
    real = rows[("identity", REAL)]
    assert real["params"] == 0 and real["params_source"] == "run" and real["macs"] is None


def test_profile_filter_and_latest_pick(capsys, store):
    uri, ids = store
    rows = json_board(capsys, uri, "--profile", "default")["rows"]
    assert {(r["model"], r["run_id"]) for r in rows if r["data_source"] == "embedded"} == {
        ("identity", ids["identity"]), ("nafnet", ids["nafnet"])}
    rows = json_board(capsys, uri, "--profile", "smoke")["rows"]
    assert [(r["model"], r["profile"], r["run_id"]) for r in rows] == [("identity", "smoke", ids["identity-smoke"])]
    latest = json_board(capsys, uri, "--pick", "latest")["rows"]
    assert next(r for r in latest if r["data_source"] == "embedded")["run_id"] == ids["identity-smoke"]


def test_all_sources_side_by_side_with_reproduced_minus_reported(capsys, store):
    uri, _ = store
    result = json_board(capsys, uri, "--source", "all")
    rows = result["rows"]
    reproduced = [r for r in rows if r["source"] == "reproduced"]
    reported = [r for r in rows if r["source"] == "reported"]
    assert len(reproduced) == 3 and len(reported) == 31
    assert all(r["rank"] is None and r["citation"] for r in reported)
    nafnet = next(r for r in reproduced if r["model"] == "nafnet")
    paper = {r["citation"]: r for r in reported if r["model"] == "nafnet"}
    assert set(paper) == {"HAIR Tab. 2", "DaAIR Tab. 2"}
    assert [d["citation"] for d in nafnet["vs_reported"]] == ["HAIR Tab. 2", "DaAIR Tab. 2"]
    for diff in nafnet["vs_reported"]:
        assert diff["comparable"] is False and "embedded synthetic suite" in diff["caveat"] and "tiny" in diff["caveat"]
        for task in result["tasks"]:
            expected = nafnet["tasks"][task]["psnr"] - paper[diff["citation"]]["tasks"][task]["psnr"]
            assert diff["tasks"][task]["psnr"] == pytest.approx(expected)
        assert diff["average"]["psnr"] == pytest.approx(nafnet["average"]["psnr"] - 27.76)
        assert diff["average"]["psnr_ci95"][0] == pytest.approx(nafnet["average"]["psnr_ci95"][0] - 27.76)
    identity = next(r for r in reproduced if r["model"] == "identity")
    assert identity["vs_reported"] == []


def test_differences_are_comparable_only_for_the_paper_configuration_on_real_data():
    reported = pd.DataFrame([{"model": "nafnet", "citation": "HAIR Tab. 2", "method": "NAFNet", "psnr/avg": 27.76,
                              "ssim/avg": 0.881, "psnr/dehaze": 25.23, "ssim/dehaze": 0.939}])
    base = {"model": "nafnet", "ranking": "r", "profile": "long", "run_id": "x", "psnr/avg": 28.0, "ssim/avg": 0.9,
            "psnr/dehaze": 25.0, "ssim/dehaze": 0.95}
    runs = pd.DataFrame([{**base, "variant": "paper", "data_source": REAL},
                         {**base, "variant": "paper", "data_source": "embedded"},
                         {**base, "variant": "tiny", "data_source": REAL}])
    diff = differences(runs, reported, ["dehaze"])
    assert diff["comparable"].tolist() == [True, False, False]
    assert diff["psnr/dehaze"].tolist() == pytest.approx([-0.23] * 3)
    assert diff.loc[0, "caveat"] == ""


def test_text_markdown_and_csv_show_the_intervals(capsys, store):
    uri, _ = store
    text = board(capsys, uri, "--source", "all")
    assert "Leaderboard five_deg v1" in text
    assert "Reproduced, ranked on embedded synthetic suite" in text and f"Reproduced, ranked on real data {REAL}" in text
    assert "Reported in the papers (not ranked; each row cites its table)" in text
    assert "no: scored on the embedded synthetic suite" in text
    identity_line = next(line for line in text.splitlines() if line.strip().startswith("1") and "identity" in line)
    assert identity_line.count("[") >= 12  # avg and every task, PSNR and SSIM, each with its interval
    markdown = board(capsys, uri, "--source", "all", "--format", "markdown")
    assert "### Reproduced, ranked on embedded synthetic suite" in markdown and "| HAIR Tab. 2 | NAFNet |" in markdown
    frame = pd.read_csv(io.StringIO(board(capsys, uri, "--source", "all", "--format", "csv")))
    assert list(frame.columns[:4]) == ["rank", "model", "variant", "source"]
    assert {"psnr/avg/ci_low", "psnr/dehaze/ci_high", "params", "macs"} <= set(frame.columns)
    assert frame["source"].value_counts().to_dict() == {"reported": 31, "reproduced": 3, "reproduced minus reported": 2}


def test_empty_store_prints_a_clear_message(capsys, tmp_path):
    tracking.client(f"sqlite:///{tmp_path / 'empty.db'}")  # a store without runs
    text = board(capsys, f"sqlite:///{tmp_path / 'empty.db'}")
    assert "No finished runs of this setting in the tracking store." in text
    assert json.loads(board(capsys, f"sqlite:///{tmp_path / 'empty.db'}", "--format", "json"))["rows"] == []


def test_a_store_that_does_not_exist_is_named_and_not_created(capsys, tmp_path):
    missing = tmp_path / "typo" / "mlflow.db"
    assert main(["leaderboard", "--setting", SETTING, "--tracking-uri", f"sqlite:///{missing}"]) == 0
    out, err = capsys.readouterr()
    assert "No finished runs of this setting in the tracking store." in out
    assert f"no tracking store at {missing} yet" in err
    assert not missing.exists() and not missing.parent.exists()
