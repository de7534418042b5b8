"""Two-level bootstrap (seeds, then test images within each seed) and seeded entries on the leaderboard."""
import numpy as np
import pytest

from leaderboards.bootstrap import paired_difference, run_intervals, seed_intervals, seeded_difference

TASKS = ["derain", "dehaze"]


def per_image(values_by_task):
    return {task: {f"img{i:02d}": {"psnr": float(v), "ssim": float(v) / 100} for i, v in enumerate(values)}
            for task, values in values_by_task.items()}


def seeded(offsets, spread=1.0, images=30, rng_seed=0):
    """One entry trained once per offset: each seed's images are the same noisy images shifted by its offset."""
    rng = np.random.default_rng(rng_seed)
    base = {"derain": rng.normal(30, spread, images), "dehaze": rng.normal(25, spread, images)}
    return [per_image({t: v + offset for t, v in base.items()}) for offset in offsets]


def reference_interval(seeds, tasks, resamples=4000, rng_seed=123):
    """The two-level bootstrap written out as loops: draw seeds, then each drawn seed's images, per replicate."""
    rng = np.random.default_rng(rng_seed)
    values = {t: np.array([[s[t][n]["psnr"] for n in sorted(s[t])] for s in seeds]) for t in tasks}
    draws = []
    for _ in range(resamples):
        picked = rng.integers(0, len(seeds), len(seeds))
        task_means = []
        for t in tasks:
            n = values[t].shape[1]
            task_means.append(np.mean([values[t][k][rng.integers(0, n, n)].mean() for k in picked]))
        draws.append(np.mean(task_means))
    return np.percentile(draws, [2.5, 97.5])


def test_two_level_interval_matches_a_direct_computation():
    seeds = seeded([-0.6, 0.1, 0.5, 0.9], spread=1.5, images=20)
    intervals = seed_intervals(seeds, TASKS, resamples=4000)
    point = np.mean([np.mean([s[t][n]["psnr"] for n in s[t]]) for s in seeds for t in TASKS])
    assert intervals["avg"].value == pytest.approx(point, abs=1e-9)
    low, high = reference_interval(seeds, TASKS)
    # two Monte Carlo estimates of the same percentiles (4000 replicates each): a few hundredths of a dB apart
    assert intervals["avg"].low == pytest.approx(low, abs=0.06) and intervals["avg"].high == pytest.approx(high, abs=0.06)
    assert intervals["avg"].high - intervals["avg"].low > 0.5  # the seeds' spread dominates: not the image-only width


def test_interval_widens_when_the_seeds_disagree():
    agree = seed_intervals(seeded([0.0, 0.0, 0.0]), TASKS)["avg"]
    disagree = seed_intervals(seeded([-1.0, 0.0, 1.0]), TASKS)["avg"]
    assert agree.value == pytest.approx(disagree.value)
    assert disagree.high - disagree.low > 2 * (agree.high - agree.low)


def test_one_seed_equals_the_image_bootstrap_exactly():
    (one,) = seeded([0.0], spread=2.0)
    assert seed_intervals([one], TASKS) == run_intervals(one, TASKS)
    assert seed_intervals([one], TASKS, "ssim") == run_intervals(one, TASKS, "ssim")
    (other,) = seeded([0.3], spread=2.0, rng_seed=5)
    difference = seeded_difference([one], [other], TASKS)
    assert difference.images == paired_difference(one, other, TASKS) and difference.seeds is None


def test_a_lead_needs_both_levels_to_exclude_zero():
    # the same images every seed, shifted: the paired image-level difference is tight around the mean gap
    steady = seeded([0.0, 0.02, -0.02])
    noisy = seeded([-0.1, -1.2, 1.0])  # mean gap +0.1 dB to `steady`, but the seeds disagree by 2 dB
    ahead = seeded([0.6, 0.62, 0.58])
    shaky = seeded_difference(noisy, steady, TASKS)
    assert shaky.images.excludes_zero() and not shaky.seeds.excludes_zero() and not shaky.clear()
    clear = seeded_difference(ahead, steady, TASKS)
    assert clear.images.excludes_zero() and clear.seeds.excludes_zero() and clear.clear()
    assert clear.seeds.value == pytest.approx(0.6, abs=1e-9)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--seeds", "0,0"], "--seeds must be distinct; 0 is given more than once in '0,0'"),
        (["--seeds", "-1"], "--seeds must be non-negative integers, got -1 in '-1'"),
        (["--seeds", "0,a"], "--seeds expects comma-separated non-negative integers"),
        (["--repeats", "0"], "--repeats must be a positive number of seeds, got 0"),
        (["--seeds", "0,1", "--repeats", "2"], "give --seeds or --repeats, not both"),
    ],
)
def test_bad_seeds_are_refused_in_one_line_before_anything_starts(args, expected, harness_home):
    from conftest import harness_main

    result = harness_main(["submit", "--model", "nafnet", "--setting", "three_deg", *args], harness_home)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {result.stderr.strip()[len('error: '):]}" and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (harness_home / "mlflow.db").exists()


@pytest.mark.slow
def test_two_seeds_train_two_child_runs_with_different_weights_and_make_one_row(tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    from conftest import run_harness
    from harness.runs.checkpoints import WEIGHTS
    from harness.runs.store import tracking_uri

    result = run_harness(["submit", "--model", "nafnet", "--setting", "denoise", "--profile", "smoke", "--steps", "4",
                          "--seeds", "0,1", "--cpus", "2", "--efficiency-size", "0", "--no-save-outputs"], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    import os

    os.environ["RESTORATION_BENCH_HOME"] = str(tmp_path)
    try:
        uri = tracking_uri(None)
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        (parent,) = [r for r in runs if r.data.tags.get("role") == "seeds"]
        children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                          key=lambda r: r.data.tags["seed"])
        assert [(r.data.tags["seed"], r.info.status) for r in children] == [("0", "FINISHED"), ("1", "FINISHED")]
        assert parent.info.status == "FINISHED" and parent.data.tags["seeds"] == "0,1"
        import torch

        weights = []
        for child in children:
            path = client.download_artifacts(child.info.run_id, f"checkpoint/{WEIGHTS}", str(tmp_path / child.info.run_id))
            weights.append(torch.load(path, map_location="cpu", weights_only=True))
        assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        board = run_harness(["leaderboard", "--setting", "denoise", "--format", "json", "--show-seeds"], tmp_path)
        assert board.returncode == 0, board.stderr[-2000:]
        records = json.loads(board.stdout)
        (row,) = records["rows"]
        assert row["seeds"] == 2 and row["run_id"] == parent.info.run_id
        assert row["interval"] == "2 seeds, then test images within each seed"
        scores = [c.data.metrics["psnr/avg"] for c in children]
        assert row["average"]["psnr"] == pytest.approx(np.mean(scores))
        low, high = row["average"]["psnr_ci95"]
        assert low < row["average"]["psnr"] < high
        assert [r["seed"] for r in records["seed_rows"]] == ["0", "1"]
    finally:
        os.environ.pop("RESTORATION_BENCH_HOME", None)


def test_the_seeds_of_an_entry_fold_into_one_row_with_the_mean_and_their_number():
    import pandas as pd

    from leaderboards.runs import board_columns, pick_runs
    from leaderboards.seeds import fold_seeds, seed_rows

    def row(run_id, model, psnr, seed="0", parent=None):
        return {"model": model, "variant": "tiny", "entry": "trained", "profile": "smoke", "data_source": "embedded",
                "data_fingerprint": "f", "ranking": "r", "run_id": run_id, "run_name": run_id, "experiment_id": "1",
                "start_time": int(run_id[-1]), "seed": seed, "seed_parent": parent, "seeds": 1, "seed_runs": [run_id],
                "psnr/avg": psnr, "ssim/avg": psnr / 100, "psnr/derain": psnr, "ssim/derain": psnr / 100,
                "params": 1.0, "params_source": "run", "macs": 1.0, "macs_input": "128", "latency_ms": 1.0,
                "views": {"": {"psnr/avg": psnr}}}

    frame = pd.DataFrame([row("child1", "nafnet", 30.0, "1", "P"), row("child0", "nafnet", 28.0, "0", "P"),
                          row("single2", "identity", 29.5)])
    frame = frame.reindex(columns=list(dict.fromkeys([*frame.columns, *board_columns(["derain"])])))  # others: empty
    frame = frame.drop(columns=["rank", "pick", "runs"])  # pick_runs adds them
    folded = fold_seeds(frame)
    board = pick_runs(folded, ["derain"])
    # the mean over seeds (29.0) stands for nafnet, not its best seed (30.0): identity's 29.5 ranks first
    assert list(board["model"]) == ["identity", "nafnet"] and list(board["seeds"]) == [1, 2]
    assert board.loc[1, "psnr/avg"] == pytest.approx(29.0) and board.loc[1, "run_id"] == "P"
    assert board.loc[1, "seed_runs"] == ["child0", "child1"]  # by seed
    assert list(seed_rows(frame, board)["run_id"]) == ["child0", "child1"]
