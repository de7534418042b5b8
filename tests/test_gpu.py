"""What a GPU changes: the CUDA metrics path, evaluate and submit on CUDA, bf16 training, --compile.

Marked `gpu`; every test skips without a CUDA GPU and says so. `benchmarks/gpu_check.sh` runs
them with `-m gpu`, then the GPU benchmarks.
"""
import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import recorded_runs, run_harness
from harness.data import open_data
from harness.precision import Compiler
from harness.runs.profiles import PROFILES
from harness.runs.training import train
from harness.scoring.metrics import score
from harness.settings import get_setting
from harness.settings.protocols import get_protocol
from zoo import create_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False); "
                              "run benchmarks/gpu_check.sh on a machine with one"),
]


def noisy_photos(count: int = 6, size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of scikit-image's photographs and noisy 8-bit copies of them, N x 3 x size x size in [0, 1]."""
    from skimage import data

    rng = np.random.default_rng(0)
    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
    clean, noisy = [], []
    for i in range(count):
        photo = getattr(data, names[i % len(names)])()[..., :3].astype(np.float64)
        top, left = (rng.integers(0, s - size) for s in photo.shape[:2])
        crop = photo[top : top + size, left : left + size]
        clean.append(crop / 255.0)
        noisy.append(np.clip(np.round(crop + rng.normal(0, 15, crop.shape)), 0, 255) / 255.0)
    as_tensor = lambda images: torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).float()  # noqa: E731
    return as_tensor(noisy), as_tensor(clean)


@pytest.mark.parametrize("protocol", ["promptir", "promptir_y"])
def test_cuda_metrics_equal_the_cpu_kernel_on_real_photos(protocol):
    restored, target = noisy_photos()
    on_cpu = score(restored, target, get_protocol(protocol))
    on_gpu = score(restored.cuda(), target.cuda(), get_protocol(protocol))
    for name in ("psnr", "ssim"):
        assert torch.allclose(on_gpu[name].cpu().double(), on_cpu[name].double(), atol=1e-5, rtol=0), name


@pytest.mark.slow
def test_a_smoke_submit_and_evaluate_run_on_cuda(harness_home):
    submitted = run_harness(["submit", "--model", "nafnet", "--setting", "derain", "--profile", "smoke",
                             "--gpus", "1", "--efficiency-size", "0"], harness_home)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    run = recorded_runs(harness_home)[0]
    assert run.info.status == "FINISHED" and run.data.params["run.precision"] == "fp32"
    evaluated = run_harness(["evaluate", "--weights", f"runs:/{run.info.run_id}/model", "--setting", "derain",
                             "--gpus", "1", "--precision", "bf16", "--efficiency-size", "0"], harness_home)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    scored = [r for r in recorded_runs(harness_home) if r.info.run_id != run.info.run_id][0]
    assert scored.data.params["run.device"] == "cuda" and scored.data.params["run.precision"] == "bf16"
    # bf16 forward passes, float32 scores: close to the fp32 evaluation of the same weights
    assert abs(scored.data.metrics["psnr/avg"] - run.data.metrics["psnr/avg"]) < 0.3
    board = json.loads(run_harness(["leaderboard", "--setting", "derain", "--format", "json"], harness_home).stdout)
    assert [row["precision"] for row in board["rows"]] == ["fp32"]  # the trained run stands for its re-evaluation
    assert scored.data.tags["precision"] == "bf16"


def _train_losses(precision: str, compiler: Compiler | None = None, steps: int = 20) -> list[float]:
    profile = dataclasses.replace(PROFILES.get("smoke"), steps=steps, log_every=1)
    data = open_data(get_setting("three_deg")).training_set(profile.patch_size, steps * profile.batch_size, seed=0)
    torch.manual_seed(0)
    losses = []
    train(create_model("nafnet", "tiny"), data, profile, device="cuda", precision=precision, compiler=compiler,
          on_log=lambda step, metrics: losses.append(metrics["train/loss"]))
    return losses


def test_bf16_training_is_finite_and_close_to_fp32_after_20_steps():
    fp32, bf16 = _train_losses("fp32"), _train_losses("bf16")
    assert all(np.isfinite(bf16))
    assert abs(np.mean(bf16[-5:]) - np.mean(fp32[-5:])) <= 0.05 * np.mean(fp32[-5:])


def test_fp16_training_with_gradient_scaling_is_finite():
    assert all(np.isfinite(_train_losses("fp16", steps=10)))


def test_compile_runs_on_cuda():
    compiler = Compiler(enabled=True)
    losses = _train_losses("bf16", compiler, steps=5)
    assert compiler.fallback is None, compiler.fallback
    assert all(np.isfinite(losses))
