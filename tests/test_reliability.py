"""Reliability and security: interrupted runs resume exactly, untrusted checkpoints never run."""
import pickle
import re
import signal
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

import zoo
from conftest import harness_main, run_harness, start_harness
from harness.runs import tracking
from harness.runs.checkpoints import OPTIMIZER, WEIGHTS, load_checkpoint, save_checkpoint

MARKER = Path("/tmp/restoration-bench-pwned")


class Payload:
    """Unpickling this object would create MARKER: code execution from a checkpoint."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_checkpoint_carrying_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path, writer):
    MARKER.unlink(missing_ok=True)
    model = zoo.create_model("nafnet", "tiny")
    save_checkpoint(tmp_path, model, {"state": {}, "param_groups": []}, {"step": 3})
    if writer == "torch.save":
        torch.save({"state": Payload(), "param_groups": []}, tmp_path / OPTIMIZER)
    else:
        (tmp_path / OPTIMIZER).write_bytes(pickle.dumps({"state": Payload()}))
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(tmp_path, model)
    assert not MARKER.exists()


def test_weights_of_another_model_are_refused_with_the_file_named(tmp_path):
    save_checkpoint(tmp_path, zoo.create_model("restormer", "tiny"), None, {"step": 1})
    with pytest.raises(ValueError, match=f"{WEIGHTS}.*does not fit"):
        load_checkpoint(tmp_path, zoo.create_model("nafnet", "tiny"))


def _experiment_checkpoints(home: Path) -> list[Path]:
    return sorted(home.glob("ray_results/submit-*/*/checkpoint_*"))


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_resume_equals_an_uninterrupted_run(tmp_path):
    # 100 steps: the signal comes after the third checkpoint (step 30) and the trial stops within a
    # second or two of it, so 70 steps of margin (200 steps cost ~45 s more here for nothing)
    args = ["submit", "--model", "nafnet", "--setting", "derain", "--profile", "smoke", "--steps", "100"]
    reference_home, home = tmp_path / "reference", tmp_path / "interrupted"
    reference_home.mkdir()
    home.mkdir()
    reference = run_harness(args, reference_home)
    assert reference.returncode == 0, reference.stderr[-2000:]

    process = start_harness(args, home)
    deadline = time.time() + 600
    while len(_experiment_checkpoints(home)) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr[-2000:]
    assert "harness submit --resume" in stderr
    # the trial saved the step it had just finished, not only its last periodic checkpoint
    stopped_at = re.search(r"stopped after step (\d+), which is checkpointed", stderr)
    assert stopped_at, stderr[-2000:]

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("restoration-bench/derain").experiment_id
    (run,) = client.search_runs([experiment])
    assert run.info.status == "KILLED" and "--resume" in run.data.tags["error"]
    board = run_harness(["leaderboard", "--setting", "derain", "--format", "json"], home, timeout=120)
    assert board.returncode == 0 and run.info.run_id not in board.stdout  # a killed run is never ranked

    resumed = run_harness(["submit", "--resume", run.info.run_id], home)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resuming from checkpoint at step {stopped_at.group(1)}" in resumed.stdout + resumed.stderr
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "error" not in run.data.tags and run.data.tags["resumed"] == "1"
    (finished,) = MlflowClient(f"sqlite:///{reference_home / 'mlflow.db'}").search_runs(
        [MlflowClient(f"sqlite:///{reference_home / 'mlflow.db'}").get_experiment_by_name("restoration-bench/derain").experiment_id])
    # Same seed, same data order, optimiser state restored: the same model, to float precision.
    for key in ("psnr/derain", "ssim/derain"):
        assert run.data.metrics[key] == pytest.approx(finished.data.metrics[key], abs=1e-4)
    again = run_harness(["submit", "--resume", run.info.run_id], home, timeout=120)
    assert again.returncode == 2 and "already FINISHED" in again.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--steps", "0"], "--steps must be a positive number of training steps, got 0"),
        (["--steps", "-5"], "got -5"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
        (["--option", "width"], "--option expects KEY=VALUE, got 'width'"),
        (["--option", "depth=3"], "has no option(s) ['depth']"),
        (["--variant", "huge"], "Valid variants: paper, tiny"),
        (["--blind"], "need a continuous setting"),
    ],
)
def test_bad_submit_options_are_refused_before_anything_starts(args, expected, harness_home):
    # in process: the console script's own main, without 5 s of start-up per case
    result = harness_main(["submit", "--model", "nafnet", "--setting", "three_deg", *args], harness_home)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert list(harness_home.iterdir()) == []  # refused before anything was written: no store, no plug-in folder


@pytest.mark.parametrize("args", [["submit", "--resume"], ["sweep", "--resume"], ["register", "--name", "x", "--run"],
                                  ["restore", "--input", "photo.png", "--run"]])
def test_a_run_id_that_is_not_in_the_store_is_one_line_and_a_missing_store_is_not_created(args, harness_home):
    missing = harness_main([*args, "0123abcd"], harness_home)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"no MLflow run '0123abcd': there is no tracking store at {harness_home / 'mlflow.db'}" in missing.stderr
    assert list(harness_home.iterdir()) == []
    tracking.client(f"sqlite:///{harness_home / 'mlflow.db'}")  # a store, without that run
    absent = harness_main([*args, "0123abcd"], harness_home)
    assert absent.returncode == 2 and f"no MLflow run '0123abcd' in sqlite:///{harness_home / 'mlflow.db'}" in absent.stderr
