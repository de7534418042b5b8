"""Real benchmark trees: layout, validation by `harness data check`, fixed test noise, fingerprints,
and `harness submit --data-root` on a tree built from real photographs."""
import json
import shutil

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from skimage import data as skdata

from conftest import run_harness
from harness.data import open_data
from harness.data.tree import check_tree
from harness.data.degradations import degrade
from harness.scoring.evaluation import evaluate
from harness.settings import get_setting
from zoo import create_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name, size=96):
    pixels = getattr(skdata, name)()[..., :3]
    return pixels[:size, :size] if name != "rocket" else pixels[-size:, -size:]


def save(path, pixels, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)


def degraded(kind, pixels, seed, **params):
    out = degrade(kind, pixels.astype(np.float32) / 255, np.random.default_rng(seed), **params)
    return (out * 255).round().astype(np.uint8)


def build_three_deg_tree(root):
    """A PromptIR-layout tree for three_deg from scikit-image's photographs."""
    for i, name in enumerate(PHOTOS, start=1):
        clean = photo(name)
        save(root / f"test/denoise/bsd68/{name}.png", clean)
        save(root / f"Train/Denoise/{name}.png", photo(name, 128))
        save(root / f"test/derain/Rain100L/target/norain-{i}.png", clean)
        save(root / f"test/derain/Rain100L/input/rain-{i}.png", degraded("rain", clean, i))
        save(root / f"Train/Derain/gt/norain-{i}.png", photo(name, 128))
        save(root / f"Train/Derain/rainy/rain-{i}.png", degraded("rain", photo(name, 128), 10 + i))
        save(root / f"test/dehaze/target/{i:04d}.png", clean)
        save(root / f"test/dehaze/input/{i:04d}_0.8_0.2.jpg", degraded("haze", clean, i), quality=95)
        save(root / f"Train/Dehaze/original/{i:04d}.jpg", photo(name, 128), quality=95)
        save(root / f"Train/Dehaze/synthetic/part1/{i:04d}_0.8_0.2.jpg", degraded("haze", photo(name, 128), i), quality=95)
    return root


@pytest.fixture
def tree(tmp_path):
    return build_three_deg_tree(tmp_path / "data")


def test_a_clean_tree_passes_and_counts_are_reported(tree, harness_home):
    report = check_tree(tree, get_setting("three_deg"))
    assert report.ok, report.problems
    assert report.counts["Rain100L"] == 4 and report.counts["BSD68"] == 4
    assert any("published dataset has 100" in note for note in report.notes)  # Rain100L test is 100 pairs
    result = run_harness(["data", "check", "--root", str(tree), "--setting", "three_deg"], harness_home, timeout=120)
    assert result.returncode == 0 and "OK for setting 'three_deg'" in result.stdout


def test_data_check_names_every_broken_file(tree, harness_home):
    (tree / "test/derain/Rain100L/target/norain-2.png").unlink()  # a missing target
    (tree / "test/denoise/bsd68/coffee.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    small = photo("chelsea", 80)
    save(tree / "test/dehaze/input/0003_0.8_0.2.jpg", small)  # 80x80 input, 96x96 target
    save(tree / "Train/Denoise/grey.png", photo("astronaut", 128)[..., 0])  # greyscale
    deep = (photo("rocket", 128)[..., 0].astype(np.uint16) * 257)
    Image.fromarray(deep).save(tree / "Train/Denoise/deep.png")  # 16-bit
    result = run_harness(["data", "check", "--root", str(tree), "--setting", "three_deg"], harness_home, timeout=120)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem:")]
    expected = {
        "rain-2.png has no target": "missing target",
        "coffee.png: cannot be decoded": "unreadable file",
        "0003_0.8_0.2.jpg is 80x80 but its target": "size mismatch",
        "grey.png: is a greyscale image": "greyscale",
        "deep.png: is a 16-bit image": "16-bit",
    }
    for fragment, what in expected.items():
        assert any(fragment in line for line in problems), f"{what} not reported: {problems}"
    assert len(problems) == len(expected)
    # The harness refuses to run on the broken tree and names a problem.
    setting = get_setting("three_deg")
    with pytest.raises(ValueError, match="rain-2.png has no target"):
        open_data(setting, tree).test_pairs("derain")


def test_identity_scores_are_fixed_and_the_fingerprint_follows_the_files(tree):
    setting = get_setting("three_deg")
    identity = create_model("identity")
    first = evaluate(identity, setting, open_data(setting, tree)).flat_metrics()
    second = evaluate(identity, setting, open_data(setting, tree)).flat_metrics()
    assert first == second  # the synthesised test noise is fixed per (task, image)
    # Noise at sigma 15 on real photographs: about 20log10(255/15) = 24.6 dB, higher with clipping.
    assert 24.0 < first["psnr/denoise_15"] < 26.5 and first["psnr/denoise_50"] < first["psnr/denoise_15"]
    before = open_data(setting, tree).fingerprint()
    assert open_data(setting, tree).fingerprint() == before
    save(tree / "test/dehaze/target/0001.png", photo("astronaut")[::-1].copy())
    assert open_data(setting, tree).fingerprint() != before


def test_layout_command_prints_the_expected_tree(harness_home):
    result = run_harness(["data", "layout", "--setting", "five_deg"], harness_home, timeout=120)
    assert result.returncode == 0
    for folder in ("test/deblur/GoPro/input/", "test/lowlight/LOLv1/low/", "Train/Derain/rainy/"):
        assert folder in result.stdout


@pytest.mark.slow
def test_submit_trains_and_evaluates_on_a_real_tree(tree, harness_home):
    result = run_harness(["submit", "--model", "nafnet", "--setting", "three_deg", "--profile", "smoke",
                          "--data-root", str(tree)], harness_home)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("restoration-bench/three_deg").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["data_source"] == str(tree.resolve())
    assert run.data.tags["data_fingerprint"] == open_data(get_setting("three_deg"), tree).fingerprint()
    metrics = run.data.metrics
    assert {f"psnr/{t}" for t in ("dehaze", "derain", "denoise_15", "denoise_25", "denoise_50")} <= set(metrics)
    # A missing data root is refused before anything starts.
    missing = run_harness(["submit", "--model", "nafnet", "--setting", "three_deg", "--data-root",
                           str(tree / "nope")], harness_home, timeout=120)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    shutil.rmtree(tree / "test/dehaze")
    broken = run_harness(["submit", "--model", "nafnet", "--setting", "three_deg", "--data-root", str(tree)],
                         harness_home, timeout=120)
    assert broken.returncode == 2 and "SOTS-outdoor is missing" in broken.stderr


@pytest.mark.slow
def test_a_crashing_run_is_retried_max_failures_times_then_failed_and_off_the_board(tree, harness_home):
    """README: a crashed run is retried from its checkpoint `--max-failures` times, then FAILED, never ranked.

    Training photos that cannot be decoded crash every attempt the same way; with --max-failures 2
    Ray Tune runs the trial three times (its error.txt records each failure).
    """
    broken = sorted(p for p in (tree / "Train").rglob("*") if p.is_file())
    for path in broken:  # every training file, so the first sample of every attempt hits one
        path.write_bytes(path.read_bytes()[:40])
    result = run_harness(["submit", "--model", "nafnet", "--setting", "three_deg", "--profile", "smoke", "--steps", "4",
                          "--efficiency-size", "0", "--data-root", str(tree), "--max-failures", "2"], harness_home)
    assert result.returncode != 0
    named = [p.name for p in broken if p.name in result.stderr]
    assert named, result.stderr[-3000:]  # the error names the file it could not read
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("restoration-bench/three_deg").experiment_id])
    assert run.info.status == "FAILED" and any(name in run.data.tags["error"] for name in named)
    errors = list((harness_home / "ray_results" / f"submit-{run.info.run_id}").rglob("error.txt"))
    assert len(errors) == 1 and errors[0].read_text().count("Failure #") == 3  # the first try and 2 retries
    board = run_harness(["leaderboard", "--setting", "three_deg", "--format", "json"], harness_home)
    assert not [r for r in json.loads(board.stdout)["rows"] if r.get("run_id") == run.info.run_id]
    assert not [r for r in json.loads(board.stdout)["rows"] if r["source"] == "reproduced"]
