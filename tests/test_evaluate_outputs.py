"""`harness evaluate --outputs`: a folder of restored images is checked, scored under the setting's
protocol, recorded (entry=outputs) and ranked with the models on the same test-set fingerprint.

Bad input gets one line on stderr, exit 2 and nothing in the store; extra files are a warning.
Round trips: the exported inputs copied as "restored" score exactly as `harness submit --model
identity`, and a trained run's outputs written by `harness restore` score as that run did.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import harness_main, recorded_runs, run_harness
from mlflow.tracking import MlflowClient
from PIL import Image

from harness.data import open_data
from harness.data.export import export_inputs
from harness.settings import get_setting
from leaderboards.runs import OUTPUTS

SETTING = "three_deg"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The three_deg test inputs as `harness data export` writes them."""
    folder = tmp_path_factory.mktemp("export") / "inputs"
    setting = get_setting(SETTING)
    export_inputs(setting, open_data(setting), folder)
    return folder


@pytest.fixture
def restored(exported, tmp_path) -> Path:
    """A copy of the inputs, to be spoiled by a test."""
    return Path(shutil.copytree(exported, tmp_path / "restored"))


def refused(home: Path, folder: Path) -> str:
    """`harness evaluate --outputs FOLDER` must exit 2 with one line on stderr and record nothing."""
    result = harness_main(["evaluate", "--outputs", str(folder), "--name", "mine", "--setting", SETTING], home)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert recorded_runs(home) == []
    return lines[0]


def test_missing_images_are_counted_and_the_first_named(restored, harness_home):
    for name in ("derain/astronaut.png", "derain/chelsea.png", "dehaze/coffee.png"):
        (restored / name).unlink()
    line = refused(harness_home, restored)
    assert "3 of 35 restored images missing" in line and "dehaze/coffee.png" in line and "derain/astronaut.png" in line


def test_a_wrong_size_names_the_file_and_both_sizes(restored, harness_home):
    path = restored / "denoise_25" / "rocket.png"
    with Image.open(path) as image:
        width, height = image.size
        image.crop((0, 0, width - 3, height)).save(path)
    line = refused(harness_home, restored)
    assert str(path) in line and f"{width - 3}x{height}" in line and f"{width}x{height}" in line


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_an_image_that_is_not_8_bit_rgb_is_refused(restored, harness_home, mode):
    path = restored / "dehaze" / "astronaut.png"
    with Image.open(path) as image:
        converted = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
    converted.save(path)
    line = refused(harness_home, restored)
    assert str(path) in line and "expected 8-bit RGB" in line and f"mode {mode}" in line


def test_outputs_restored_from_other_inputs_are_refused(restored, harness_home):
    manifest = json.loads((restored / "manifest.json").read_text())
    manifest["fingerprint"] = "0123456789abcdef"
    (restored / "manifest.json").write_text(json.dumps(manifest))
    line = refused(harness_home, restored)
    assert "manifest.json" in line and "0123456789abcdef" in line and open_data(get_setting(SETTING)).fingerprint() in line


def test_a_missing_folder_and_a_missing_name_are_refused(harness_home):
    assert "no such folder" in refused(harness_home, harness_home / "nowhere")
    result = harness_main(["evaluate", "--outputs", str(harness_home), "--setting", SETTING], harness_home)
    assert result.returncode == 2 and "needs --name NAME" in result.stderr


def board(home: Path) -> dict:
    result = run_harness(["leaderboard", "--setting", SETTING, "--format", "json"], home, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_copied_inputs_score_exactly_as_the_identity_model_and_extra_files_are_a_warning(restored, harness_home):
    (restored / "notes.txt").write_text("how these were made\n")
    result = run_harness(["evaluate", "--outputs", str(restored), "--name", "copied-inputs", "--setting", SETTING],
                         harness_home, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 extra file(s)" in warnings[0] and "notes.txt" in warnings[0]
    submitted = run_harness(["submit", "--model", "identity", "--setting", SETTING, "--profile", "smoke",
                             "--steps", "1"], harness_home, timeout=600)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    runs = {r.data.tags.get("entry", "trained"): r for r in recorded_runs(harness_home)}
    entry, identity = runs[OUTPUTS], runs["trained"]
    assert entry.info.status == "FINISHED" and entry.data.tags["model"] == "copied-inputs"
    assert entry.data.tags["data_fingerprint"] == identity.data.tags["data_fingerprint"]
    tasks = get_setting(SETTING).task_names
    for task in tasks:
        for metric in ("psnr", "ssim"):
            key = f"{metric}/{task}"
            assert abs(entry.data.metrics[key] - identity.data.metrics[key]) <= 1e-6, key  # measured: 0.0
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    hashes = json.loads(Path(client.download_artifacts(entry.info.run_id, "outputs.json", str(harness_home)))
                        .read_text())["sha256"]
    assert hashes["notes.txt"] == hashlib.sha256(b"how these were made\n").hexdigest()
    assert hashes["dehaze/astronaut.png"] == hashlib.sha256((restored / "dehaze/astronaut.png").read_bytes()).hexdigest()
    per_image = json.loads(Path(client.download_artifacts(entry.info.run_id, "results/per_image.json",
                                                          str(harness_home / "p"))).read_text())
    assert set(per_image) == set(tasks) and len(per_image["derain"]) == 7
    artifacts = {a.path for a in client.list_artifacts(entry.info.run_id, "samples")}
    assert {f"samples/{t}.png" for t in tasks} <= artifacts
    rows = {r["model"]: r for r in board(harness_home)["rows"] if r["source"] == "reproduced"}
    assert rows["copied-inputs"]["entry"] == OUTPUTS and rows["identity"]["entry"] == "trained"
    assert rows["copied-inputs"]["ranking"] == rows["identity"]["ranking"]


@pytest.mark.slow
def test_a_trained_runs_restored_outputs_score_as_the_run_within_a_hundredth_of_a_db(exported, harness_home):
    from harness.runs.restore import restore_file

    submitted = run_harness(["submit", "--model", "nafnet", "--setting", SETTING, "--profile", "smoke",
                             "--steps", "20"], harness_home, timeout=900)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    (run,) = recorded_runs(harness_home)
    uri = f"sqlite:///{harness_home / 'mlflow.db'}"
    outputs = harness_home / "nafnet-outputs"
    for source in sorted(exported.rglob("*.png")):  # what `harness restore --run ID --input F --output G` does
        relative = source.relative_to(exported)
        (outputs / relative.parent).mkdir(parents=True, exist_ok=True)
        restore_file(run.info.run_id, uri, source, outputs / relative)
    result = run_harness(["evaluate", "--outputs", str(outputs), "--name", "nafnet-restored", "--setting", SETTING],
                         harness_home, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    entry = next(r for r in recorded_runs(harness_home) if r.data.tags.get("entry") == OUTPUTS)
    differences = {key: entry.data.metrics[key] - run.data.metrics[key]
                   for key in run.data.metrics if key.startswith("psnr/")}
    print("PSNR of the 8-bit outputs minus the run's own:", differences)
    assert max(abs(d) for d in differences.values()) <= 0.01, differences


def test_outputs_and_plugin_rows_are_marked_on_the_board_and_in_the_dashboard_tables(tmp_path):
    """Logged with the tags `harness evaluate --outputs` and a plug-in run carry (the scores are identity's)."""
    from mlflow_runs import bench_home, evaluation, log_run

    from dashboards.tables import ranking_tables
    from leaderboards.board import build_board
    from leaderboards.render import board_records
    from leaderboards.runs import PLUGIN

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with bench_home(tmp_path):
        trained = log_run(uri, "derain", "identity", evaluation("derain", "identity"))
        outputs = log_run(uri, "derain", "identity", evaluation("derain", "identity"),
                          extra_tags={"entry": OUTPUTS, "model": "MyMethod", "variant": "outputs", "profile": "outputs"})
        plugin = log_run(uri, "derain", "identity", evaluation("derain", "identity"), variant="paper",
                         extra_tags={"plugin": "file", "model": "tiny_rescnn"})
    board = build_board("derain", uri)
    rows = {r["run_id"]: r for r in board_records(board)["rows"] if r["source"] == "reproduced"}
    assert rows[outputs]["entry"] == OUTPUTS and rows[plugin]["entry"] == PLUGIN and rows[trained]["entry"] == "trained"
    assert len({rows[i]["ranking"] for i in (trained, outputs, plugin)}) == 1
    (table,) = ranking_tables(board, lambda run_id, experiment: "").values()
    assert sorted(table["entry"]) == sorted([OUTPUTS, PLUGIN, "trained"])
