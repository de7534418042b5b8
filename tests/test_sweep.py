"""`harness sweep` on a real two-node Ray cluster on 127.0.0.1: trials on both nodes, one MLflow
child run per trial, a worker node killed mid-sweep, data-parallel Ray Train trials, cluster.yaml."""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from conftest import LoopbackRayCluster, isolated_network_available
from zoo import RestorationModel

REPO = Path(__file__).resolve().parents[1]
needs_namespace = pytest.mark.skipif(not isolated_network_available(),
                                     reason="Ray tests need root and unshare to stay on loopback")
TINY = ["--model", "nafnet", "--setting", "derain", "--profile", "smoke", "--efficiency-size", "0"]
ABSURD_LR = 0.1
TOLERANCE_DB = 2e-6  # 2 DDP workers vs one process: 0 (validation) and 4.6e-7 dB (test) measured


def client(home: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def sweep_runs(home: Path) -> tuple[object, list]:
    """(parent run, child runs) of the one sweep in `home`."""
    mlflow = client(home)
    experiment = mlflow.get_experiment_by_name("restoration-bench/derain")
    runs = mlflow.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1, [r.data.tags.get("role") for r in runs]
    parent = parents[0]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


# ----------------------------------------------------------------------------- bad input: nothing starts


@pytest.mark.parametrize("extra, expected", [
    (["--scheduler", "hyperband"], "unknown scheduler 'hyperband'"),
    (["--num-samples", "0"], "--num-samples must be a positive number of trials, got 0"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial must be >= 0"),
    (["--space", "depth=choice:1,2"], "unknown search-space key 'depth'"),
    (["--space", "model.depth=choice:1,2"], "model 'nafnet' has no option(s) ['depth']"),
    (["--space", "lr=loguniform:0.01:0.001"], "needs low < high"),
    (["--space", "lr=gaussian:1:2"], "unknown search-space kind"),
    (["--scheduler", "pbt"], "every trial must have the same architecture; model.width varies"),
    (["--workers-per-trial", "3"], "3 workers per trial cannot split the profile's batch of 4"),
    (["--workers-per-trial", "2", "--accumulate", "4"],
     "2 workers per trial cannot split the profile's batch of 4 equally into 4 micro-batches each"),
    (["--accumulate", "3"], "--accumulate must be a positive divisor of the profile's batch of 4, got 3"),
])
def test_bad_sweep_input_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch, extra, expected):
    from harness.cli import main

    monkeypatch.setenv("RESTORATION_BENCH_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["sweep", *TINY, *extra]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_default_spaces_are_plain_data_and_valid_for_every_model():
    from harness.runs.config import RunConfig
    from harness.runs.sweep import build_space, to_tune, validate_space
    from zoo import MODELS
    from zoo.search_spaces import SEARCH_SPACES

    assert "ray" not in Path(REPO / "zoo" / "search_spaces.py").read_text()
    for model in MODELS:
        space = build_space(model, [])
        validate_space(space, RunConfig(model=model, setting="five_deg", variant="tiny"))
        to_tune(space)
    assert set(SEARCH_SPACES.get("res_hair")) == {"lr", "model.candidates"}


def test_space_overrides_from_the_command_line_and_a_yaml_file(tmp_path):
    from harness.runs.sweep import build_space

    file = tmp_path / "space.yaml"
    file.write_text(yaml.safe_dump({"lr": {"kind": "grid", "values": [0.001, 0.002]}, "model.width": 12}))
    space = build_space("nafnet", ["weight_decay=uniform:0:0.01"], str(file))
    assert build_space("nafnet", ["lr=loguniform:1e-4:3e-3"])["lr"].values == (1e-4, 3e-3)  # YAML reads 1e-4 as text
    boxes = build_space("res_hair", ["model.candidates=grid:[3,3,3,3],[5,7,7,9]"])["model.candidates"]
    assert boxes.kind == "grid" and boxes.values == ((3, 3, 3, 3), (5, 7, 7, 9))
    assert space["lr"].kind == "grid" and space["lr"].values == (0.001, 0.002)
    assert space["model.width"].values == (12,)
    assert space["weight_decay"].kind == "uniform"


def test_schedulers_are_built_from_the_registry():
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from harness.runs.config import RunConfig
    from harness.runs.sweep import SweepConfig, _tune_config, build_space

    run = RunConfig(model="nafnet", setting="derain", profile="smoke")
    asha = _tune_config(SweepConfig(run=run, space=build_space("nafnet", [])))
    assert isinstance(asha.scheduler, ASHAScheduler) and asha.metric == "val/psnr" and asha.mode == "max"
    pbt_config = SweepConfig(run=run, space=build_space("nafnet", ["lr=loguniform:1e-4:1e-2"], defaults=False),
                             scheduler="pbt")
    pbt_config.validate()
    pbt = _tune_config(pbt_config).scheduler
    assert isinstance(pbt, PopulationBasedTraining) and set(pbt._hyperparam_mutations["space"]) == {"lr"}


# ----------------------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"].get("GPU", 0) >= 1 and t["max_workers"] > t["min_workers"] for t in workers)
    setup = "\n".join(config["setup_commands"] + config.get("head_setup_commands", []))
    assert "pip install" in setup and "mlflow server" in setup and "RESTORATION_BENCH_HOME" in setup


# ----------------------------------------------------------------------------- two nodes on 127.0.0.1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One two-node cluster (1 CPU per node) for the module's sweeps."""
    if not isolated_network_available():
        pytest.skip("Ray tests need root and unshare to stay on loopback")
    nodes = LoopbackRayCluster(tmp_path_factory.mktemp("cluster"))
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.mark.slow
@needs_namespace
def test_sweep_runs_trials_on_both_nodes_each_a_child_run(cluster, tmp_path):
    # Four trials over the default space (model.width sampled), the learning rate a grid whose last value
    # is absurd: 0.1, 100x the profile's, gives about 5 dB at the first rung where 1e-3 gives 16-21
    # (measured in process for widths 8 and 16). It starts third or fourth, after a good trial has
    # reported at the rung, so ASHA must stop it there.
    proc = cluster.popen(["sweep", *TINY, "--num-samples", "1", "--space", f"lr=grid:0.001,0.002,0.003,{ABSURD_LR}",
                          "--address", cluster.address], tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.scheduler"] == "asha"
    assert len(trials) == 4 and len({t.data.tags["trial_id"] for t in trials}) == 4
    nodes = {t.data.tags["ray.node_id"]: t.data.tags["ray.head_node"] for t in trials}
    assert len(nodes) == 2 and set(nodes.values()) == {"true", "false"}, nodes
    mlflow = client(tmp_path)
    for trial in trials:
        tags, params = trial.data.tags, trial.data.params
        assert "sweep.lr" in params and "sweep.model.width" in params and params["model.width"] == params["sweep.model.width"]
        assert len(mlflow.get_metric_history(trial.info.run_id, "val/psnr")) >= 1  # validation curve
        # ASHA's default: a trial either trains its budget and is evaluated, or is stopped at a rung
        assert trial.info.status == "FINISHED" or (trial.info.status == "KILLED" and tags["stopped_early"] == "asha")
        if trial.info.status == "FINISHED":
            assert {"psnr/derain", "ssim/derain", "psnr/avg"} <= set(trial.data.metrics)
    (absurd,) = [t for t in trials if float(t.data.params["sweep.lr"]) == ABSURD_LR]
    assert absurd.info.status == "KILLED" and absurd.data.tags["stopped_early"] == "asha"
    rung = [m.step for m in mlflow.get_metric_history(absurd.info.run_id, "val/psnr")]
    assert rung == [10], rung  # stopped at the first rung, its budget of 20 steps not trained
    assert "psnr/avg" not in absurd.data.metrics  # never evaluated on the test images
    best = [t for t in trials if t.data.tags.get("sweep_best") == "true"]
    assert len(best) == 1 and best[0].info.run_id == parent.data.tags["best_run_id"]
    assert best[0].info.status == "FINISHED"
    from leaderboards.runs import leaderboard

    board = leaderboard("derain", f"sqlite:///{tmp_path / 'mlflow.db'}", ["derain"], 1)
    assert list(board["run_id"]) == [best[0].info.run_id]  # the sweep stands by its best trial only


@pytest.mark.slow
@needs_namespace
def test_trials_on_a_reused_actor_each_log_into_their_own_child_run(cluster, tmp_path):
    """Three trials on two 1-CPU nodes: a worker process runs a second trial (Tune's reuse_actors), and every
    trial's params and metrics are in its own child run, none in another's."""
    rates = (0.001, 0.002, 0.003)
    proc = cluster.popen(["sweep", *TINY, "--scheduler", "fifo", "--no-default-space", "--num-samples", "1",
                          "--space", "lr=grid:" + ",".join(map(str, rates)), "--address", cluster.address], tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
    workers = [(t.data.tags["ray.node_id"], t.data.tags["ray.worker_pid"]) for t in trials]
    assert len(set(workers)) < len(workers), workers  # one worker process ran two trials
    assert sorted(float(t.data.params["sweep.lr"]) for t in trials) == list(rates)
    mlflow, final_losses = client(tmp_path), set()
    for trial in trials:
        run_id, params, lr = trial.info.run_id, trial.data.params, float(trial.data.params["sweep.lr"])
        assert float(params["profile.lr"]) == lr and trial.data.tags["attempts"] == "1"
        assert [m.value for m in mlflow.get_metric_history(run_id, "hp/lr")] == [lr]
        history = {key: sorted(m.step for m in mlflow.get_metric_history(run_id, key))
                   for key in ("train/loss", "val/psnr", "psnr/avg")}
        assert history == {"train/loss": [5, 10, 15, 20], "val/psnr": [10, 20], "psnr/avg": [20]}, (lr, history)
        final_losses.add(next(m.value for m in mlflow.get_metric_history(run_id, "train/loss") if m.step == 20))
    assert len(final_losses) == 3  # three learning rates, three different curves: each run holds its own


# ----------------------------------------------------------------------------- data-parallel trials


class RecordingSet(torch.utils.data.Dataset):
    """A training set that remembers which items were read, in order."""

    def __init__(self, dataset):
        self.dataset, self.read = dataset, []

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.read.append(index)
        return self.dataset[index]


class OneConvolution(RestorationModel):
    """The smallest trainable restoration model: the slicing, not the network, is under test."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, degraded, cond=None):
        return degraded + self.conv(degraded)


def test_each_data_parallel_worker_trains_on_its_own_equal_slice_of_every_batch():
    """The slicing `train(shard=(rank, world))` does for Ray Train workers, on the real training loop.

    Two workers of a batch of 4 read 2 items each per step, disjoint, and together exactly the 4
    items the one-process run reads at that step (a worker reading the whole batch fails this).
    """
    from harness.data import open_data
    from harness.runs.profiles import PROFILES
    from harness.runs.training import train
    from harness.settings import get_setting

    profile = dataclasses.replace(PROFILES.get("smoke"), steps=3, patch_size=16)
    data = open_data(get_setting("derain"), None)
    read = {}
    for shard in ((0, 1), (0, 2), (1, 2)):
        torch.manual_seed(0)
        dataset = RecordingSet(data.training_set(profile.patch_size, profile.steps * profile.batch_size, 0))
        train(OneConvolution(), dataset, profile, shard=shard)
        read[shard] = dataset.read
    batch = profile.batch_size
    for step in range(profile.steps):
        whole = read[(0, 1)][step * batch:(step + 1) * batch]
        halves = [read[(rank, 2)][step * batch // 2:(step + 1) * batch // 2] for rank in (0, 1)]
        assert sorted(whole) == list(range(step * batch, (step + 1) * batch))  # item i belongs to step i // batch
        assert len(halves[0]) == len(halves[1]) == batch // 2
        assert not set(halves[0]) & set(halves[1])
        assert sorted(halves[0] + halves[1]) == sorted(whole)
    assert len(read[(0, 2)]) == len(read[(1, 2)]) == profile.steps * batch // 2  # nothing read twice or beyond


@pytest.mark.slow
@needs_namespace
def test_two_worker_ray_train_trial_matches_one_worker(cluster, tmp_path):
    """Global batch 4 split 2+2 with all-reduced gradients vs 4 in one process: same validation PSNR.

    The two workers run on the two nodes (1 CPU each, 0.99 per worker: the Tune trial driving the
    TorchTrainer holds 0.01), so gloo all-reduces across nodes. The runs differ only in float
    summation order (gradients summed over two halves, then averaged): measured here, validation
    PSNR equal, test PSNR 4.6e-7 dB apart, hence TOLERANCE_DB (4x that); the same with DDP.
    The logged training loss is the mean over the workers' slices, so it matches too.
    """
    metrics = {}
    for workers in (1, 2):
        home = tmp_path / f"w{workers}"
        home.mkdir()
        proc = cluster.popen(["sweep", *TINY, "--steps", "20", "--scheduler", "fifo", "--no-default-space",
                              "--space", "lr=0.001", "--num-samples", "1", "--address", cluster.address,
                              "--workers-per-trial", str(workers), "--cpus-per-trial", "1.98" if workers == 2 else "1"],
                             home)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        parent, trials = sweep_runs(home)
        assert len(trials) == 1 and trials[0].info.status == "FINISHED"
        assert parent.data.tags["sweep.workers_per_trial"] == str(workers)
        metrics[workers] = trials[0].data.metrics
    assert len(client(tmp_path / "w2").get_metric_history(
        sweep_runs(tmp_path / "w2")[1][0].info.run_id, "val/psnr")) == 2  # a validation point per checkpoint
    differences = {k: abs(metrics[2][k] - metrics[1][k]) for k in ("val/psnr", "psnr/avg")}
    print(f"2 DDP workers vs 1: {differences}")
    assert differences["val/psnr"] < TOLERANCE_DB, differences
    assert differences["psnr/avg"] < TOLERANCE_DB, differences
    assert metrics[2]["train/loss"] == pytest.approx(metrics[1]["train/loss"], rel=1e-3)




# ----------------------------------------------------------------------------- population based training


@pytest.mark.slow
@needs_namespace
def test_pbt_sweep_exploits_a_checkpoint_and_records_both_trials(cluster, tmp_path):
    """PBT end to end: 2 trials, validation every 10 of 40 steps; the worse trial copies the better one's
    checkpoint and a perturbed learning rate, and continues in its own child run."""
    proc = cluster.popen(["sweep", *TINY, "--steps", "40", "--scheduler", "pbt", "--no-default-space",
                          "--space", "lr=loguniform:1e-4:1e-1", "--num-samples", "2", "--address", cluster.address],
                         tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.scheduler"] == "pbt"
    assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
    mlflow = client(tmp_path)
    exploited = [t for t in trials if int(t.data.tags["attempts"]) > 1]
    assert exploited, [t.data.tags for t in trials]
    rates = {}
    for trial in exploited:
        tags = trial.data.tags
        # restarted from a checkpoint at a perturbation point (PBT also pauses and resumes a trial from its
        # own checkpoint when the CPUs hold one trial at a time: that restart keeps its learning rate)
        assert all(int(tags[f"attempt{a}.start_step"]) % 10 == 0 and int(tags[f"attempt{a}.start_step"]) > 0
                   for a in range(2, int(tags["attempts"]) + 1)), tags
        history = sorted(mlflow.get_metric_history(trial.info.run_id, "hp/lr"), key=lambda m: m.step)
        rates[trial.info.run_id] = [m.value for m in history]
    # the worse trial took the better one's checkpoint with a perturbed learning rate
    assert any(len(set(values)) >= 2 for values in rates.values()), rates
    for trial in trials:  # each trial evaluated once, in its own child run
        assert len(mlflow.get_metric_history(trial.info.run_id, "psnr/avg")) == 1


# ----------------------------------------------------------------------------- a second Ctrl+C


@pytest.mark.slow
@needs_namespace
def test_a_second_ctrl_c_stops_at_once_when_the_trial_cannot_answer(cluster, tmp_path):
    """README: Ctrl+C asks the trial to checkpoint its step; a second Ctrl+C stops at once from the last
    periodic checkpoint. A data-parallel trial never answers the first (its workers would have to agree
    on the step, harness/runs/trial.py), so only the second signal (or the 60 s grace) can end it."""
    from harness.runs.submit import STOP_GRACE_S

    args = ["sweep", *TINY, "--steps", "400", "--scheduler", "fifo", "--no-default-space", "--space", "lr=0.001",
            "--num-samples", "1", "--address", cluster.address, "--workers-per-trial", "2", "--cpus-per-trial", "1.98"]
    proc = cluster.popen(args, tmp_path)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "ray_results").glob("sweep-*/train/*/checkpoint_*")):  # a periodic checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:] if proc.poll() is not None else "timeout"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    first = time.monotonic()
    time.sleep(5)
    assert proc.poll() is None  # the first Ctrl+C alone waits for an answer that does not come
    parent, _ = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED"  # recorded at once
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - first
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    assert stopped_after < STOP_GRACE_S - 10, stopped_after  # the second signal, not the grace timer
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED" and "harness sweep --resume" in parent.data.tags["error"]
    (trial,) = trials
    assert trial.info.status == "KILLED" and "harness sweep --resume" in trial.data.tags["error"]
    assert "psnr/avg" not in trial.data.metrics


@pytest.mark.slow
@needs_namespace
def test_one_ctrl_c_stops_after_the_grace_time_when_the_trial_cannot_answer(cluster, tmp_path):
    """README: without a second Ctrl+C the driver stops the silent trial once the grace time is over
    (RESTORATION_BENCH_STOP_GRACE_S, 60 s by default; 8 s here)."""
    args = ["sweep", *TINY, "--steps", "400", "--scheduler", "fifo", "--no-default-space", "--space", "lr=0.001",
            "--num-samples", "1", "--address", cluster.address, "--workers-per-trial", "2", "--cpus-per-trial", "1.98"]
    proc = cluster.popen(args, tmp_path, RESTORATION_BENCH_STOP_GRACE_S="8")
    deadline = time.monotonic() + 300
    while not list((tmp_path / "ray_results").glob("sweep-*/train/*/checkpoint_*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:] if proc.poll() is not None else "timeout"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    first = time.monotonic()
    out, err = proc.communicate(timeout=120)
    stopped_after = time.monotonic() - first
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    assert "up to 8 s" in out + err
    assert 8 <= stopped_after < 60, stopped_after  # the grace timer, well before the default 60 s
    parent, (trial,) = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED" and trial.info.status == "KILLED"


# ----------------------------------------------------------------------------- interrupted sweep


@pytest.mark.slow
@needs_namespace
def test_interrupted_sweep_resumes_with_every_trial_recorded_once(cluster, tmp_path):
    args = ["sweep", *TINY, "--steps", "40", "--scheduler", "fifo", "--no-default-space",
            "--space", "lr=grid:0.001,0.002", "--num-samples", "1", "--address", cluster.address]
    proc = cluster.popen(args, tmp_path)
    deadline = time.monotonic() + 300
    while True:  # stop the sweep once a trial has a checkpoint
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.5)
        if not list((tmp_path / "ray_results").glob("sweep-*/sweep_trial_*/checkpoint_*")):
            continue
        break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "KILLED" and "harness sweep --resume" in parent.data.tags["error"]
    before = {t.info.run_id for t in trials}
    statuses = [t.info.status for t in trials]  # a trial may have finished before the signal
    assert "KILLED" in statuses and set(statuses) <= {"KILLED", "FINISHED"}, statuses

    resumed = cluster.popen(["sweep", "--resume", parent.info.run_id, "--address", cluster.address], tmp_path)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-2000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["resumed"] == "1"
    assert len(trials) == 2 and before <= {t.info.run_id for t in trials}  # interrupted trials kept their runs
    assert len({t.data.tags["trial_id"] for t in trials}) == 2
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert len(client(tmp_path).get_metric_history(trial.info.run_id, "psnr/avg")) == 1
        if trial.info.run_id in before and int(trial.data.tags["attempts"]) > 1:
            assert int(trial.data.tags[f"attempt{trial.data.tags['attempts']}.start_step"]) > 0  # from a checkpoint


# ----------------------------------------------------------------------------- a node dies


@pytest.mark.slow
@needs_namespace
def test_killed_worker_node_trial_resumes_from_checkpoint_and_is_recorded_once(cluster, tmp_path):
    """Runs last in this module: the worker node stays dead afterwards."""
    args = ["sweep", *TINY, "--steps", "40", "--scheduler", "fifo", "--no-default-space",
            "--space", "lr=grid:0.001,0.002", "--num-samples", "1", "--address", cluster.address]
    proc = cluster.popen(args, tmp_path)
    mlflow, victim, deadline = None, None, time.monotonic() + 300
    while victim is None:  # wait for a trial on the worker node to have a checkpoint (a validation point)
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:] if proc.poll() is not None else "timeout"
        time.sleep(0.5)
        if not list((tmp_path / "ray_results").glob("sweep-*")):  # made after the driver set up the MLflow store
            continue
        mlflow = mlflow or client(tmp_path)
        experiments = [e.experiment_id for e in mlflow.search_experiments()]
        for run in mlflow.search_runs(experiments, "tags.`ray.head_node` = 'false' and attributes.status = 'RUNNING'"):
            if mlflow.get_metric_history(run.info.run_id, "val/psnr"):
                victim = run
    os.kill(cluster.worker_raylet(), signal.SIGKILL)  # the worker node dies, mid-trial
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    parent, trials = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert len(trials) == 2 and len({t.data.tags["trial_id"] for t in trials}) == 2  # every trial recorded once
    assert all(t.info.status == "FINISHED" for t in trials)
    resumed = {t.info.run_id: t for t in trials}[victim.info.run_id]
    tags = resumed.data.tags
    assert int(tags["attempts"]) >= 2, tags
    assert tags["attempt1.ray.node_id"] == victim.data.tags["ray.node_id"]
    assert tags["ray.head_node"] == "true" and tags["ray.node_id"] != tags["attempt1.ray.node_id"]
    assert int(tags[f"attempt{tags['attempts']}.start_step"]) >= 10  # from its checkpoint, not from scratch
    for trial in trials:  # final metrics once per trial
        assert len(client(tmp_path).get_metric_history(trial.info.run_id, "psnr/avg")) == 1
