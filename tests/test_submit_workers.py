"""`harness submit --workers N`: one run trained data-parallel, the same step however its batch is split.

The equality test runs the real training loop in 2 gloo processes on loopback (no Ray, as
tests/test_parallel.py); the end-to-end test runs `harness submit --workers 2` through Ray Train,
stops it with SIGTERM and resumes it on 1 worker.
"""
from __future__ import annotations

import dataclasses
import signal
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import harness_main, isolated_network_available, run_harness, start_harness
from harness.runs.parallel import DataParallel, mean_over_group
from harness.runs.profiles import PROFILES
from harness.runs.training import train
from test_parallel import run_two_workers, training_set
from zoo import create_model

# An effective batch of 8 for 3 steps, every step logged (the loss curve).
PROFILE = dataclasses.replace(PROFILES.get("smoke"), steps=3, batch_size=8, patch_size=32, log_every=1,
                              checkpoint_every=100)
TOLERANCE = 1e-5  # the bound; float32 sums in another order differ by about 1e-7 (tests/test_parallel.py)


def trained(profile, rank: int = 0, world: int = 1, data_parallel=None) -> dict[str, torch.Tensor]:
    """The tiny NAFNet trained from seed 0 on this process's slices: its parameters and its loss curve."""
    torch.manual_seed(0)
    model = create_model("nafnet", "tiny")
    losses: list[float] = []

    def on_log(step: int, metrics: dict[str, float]) -> None:  # as train_evaluate logs: the mean over the workers
        losses.append((mean_over_group(metrics) if world > 1 else metrics)["train/loss"])

    train(model, training_set(profile), profile, shard=(rank, world), data_parallel=data_parallel, on_log=on_log)
    return {**{k: v.detach().clone() for k, v in model.named_parameters()}, "loss_curve": torch.tensor(losses)}


def _two_workers_of_four(rank: int, world: int) -> dict[str, torch.Tensor]:
    return trained(PROFILE, rank, world, DataParallel())


@pytest.mark.slow  # spawns two processes (about 15 s with their imports)
def test_two_workers_of_four_equal_one_of_eight_equal_four_accumulated_twice(tmp_path):
    one = trained(PROFILE)
    accumulated = trained(dataclasses.replace(PROFILE, accumulate=2))
    two = run_two_workers(_two_workers_of_four, tmp_path)
    start = create_model("nafnet", "tiny").state_dict()
    assert any((one[k] - start[k]).abs().max() > 1e-3 for k in start if k in one)  # it did train
    for name, other in (("2 workers x 4", two), ("1 worker x 4 x accumulate 2", accumulated)):
        difference = max((one[k] - other[k]).abs().max().item() for k in one)
        print(f"{name} vs 1 worker x 8: max difference {difference:.2e} (parameters and loss curve)")
        assert one["loss_curve"].shape == other["loss_curve"].shape == (3,)
        assert difference <= TOLERANCE, name


BAD_INPUT = [
    (["--workers", "0"], "--workers must be a positive number of data-parallel workers, got 0"),
    (["--workers", "3"], "the effective batch of 4 does not split into 3 worker(s) x 1 micro-batch(es)"),
    (["--workers", "2", "--gpus-per-worker", "1"], "--gpus-per-worker 1: this machine has no CUDA GPU"),
]


@pytest.mark.parametrize("extra, expected", BAD_INPUT)
def test_bad_worker_options_get_one_line_and_exit_2(tmp_path, extra, expected):
    if "--gpus-per-worker" in extra and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = harness_main(["submit", "--model", "nafnet", "--setting", "three_deg", "--profile", "smoke", *extra],
                          tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()  # one clear line
    assert line.startswith("error: ") and expected in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()  # nothing started


STEPS = 60  # smoke checkpoints every 10 steps: the stop lands mid-run


@pytest.mark.slow
@pytest.mark.skipif(not isolated_network_available(), reason="Ray needs a private loopback namespace here")
def test_sigterm_during_a_two_worker_run_then_resume_on_one_worker_finishes_the_same_steps(harness_home):
    args = ["submit", "--model", "nafnet", "--setting", "three_deg", "--profile", "smoke", "--steps", str(STEPS),
            "--efficiency-size", "0", "--no-save-outputs"]
    process = start_harness([*args, "--workers", "2"], harness_home)
    deadline = time.monotonic() + 900  # Ray's start and the first 10 steps; minutes on a loaded 2-core machine
    try:
        while not list(harness_home.glob("ray_results/submit-*/train/train/checkpoint_*")):  # rank 0 checkpointed
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 900 s"
            time.sleep(0.3)
    except AssertionError:
        if process.poll() is None:  # never leave the run (and its Ray) behind
            process.send_signal(signal.SIGINT)
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=120)
        raise
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, out[-2000:] + err[-3000:]
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("restoration-bench/three_deg").experiment_id])
    assert run.info.status == "KILLED" and "harness submit --resume" in run.data.tags["error"]
    stopped = max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert 0 < stopped < STEPS
    assert (run.data.tags["workers"], run.data.params["budget.workers"], run.data.params["budget.steps"]) == (
        "2", "2", str(STEPS))

    resumed = run_harness(["submit", "--resume", run.info.run_id, "--workers", "1"], harness_home)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "on 1 worker(s)" in resumed.stdout and "[train] resuming from checkpoint at step" in resumed.stdout
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["workers"] == "1"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) == STEPS
    assert run.data.metrics["psnr/avg"] > 0
    budget = run.data.tags["budget"]
    assert budget == f"{STEPS * 4 / 910:.4g} ep = {STEPS} steps x 4"  # 910: three_deg's embedded epoch
    assert budget in resumed.stdout  # the leaderboard printed after the run shows it beside the numbers
