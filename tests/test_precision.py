"""--precision and --compile: bf16 trains like fp32, fp16 scaling skips overflowing steps, compile equals eager
(or falls back to eager, saying why), and a precision the device cannot do is refused in one line."""
import dataclasses
import shutil

import pytest
import torch

from harness.cli import main
from harness.data import open_data
from harness.precision import PRECISIONS, Compiler, GradientScaler, check_precision, compiled
from harness.runs.profiles import PROFILES
from harness.runs.training import train
from harness.settings import get_setting
from zoo import create_model


def fresh_nafnet():
    torch.manual_seed(0)
    return create_model("nafnet", "tiny")


@pytest.mark.slow
def test_bf16_training_reaches_the_fp32_loss_within_2_percent_after_50_steps():
    profile = dataclasses.replace(PROFILES.get("smoke"), steps=50, log_every=5)
    data = open_data(get_setting("three_deg")).training_set(profile.patch_size, 50 * profile.batch_size, seed=0)
    losses = {}
    for precision in ("fp32", "bf16"):
        logged = []
        train(fresh_nafnet(), data, profile, precision=precision,
              on_log=lambda step, metrics: logged.append(metrics["train/loss"]))
        losses[precision] = sum(logged[-3:]) / 3  # the last 15 steps' logged losses, less noisy than one step
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran in reduced precision
    assert abs(losses["bf16"] - losses["fp32"]) <= 0.02 * losses["fp32"], losses


def test_fp16_gradient_scaling_skips_a_step_whose_gradients_overflow():
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler = GradientScaler(PRECISIONS.get("fp16"), "cpu")  # the scaler's logic is the same on CPU
    start = scaler.scaler.get_scale()
    scaler.backward((weight * torch.tensor([1.0, 2.0, float("inf"), 3.0])).sum())  # an overflowing gradient
    assert not scaler.step(optimizer)
    assert torch.equal(weight.detach(), torch.ones(4))  # the step was skipped
    assert scaler.scaler.get_scale() == start / 2  # and the scale lowered (GradScaler's backoff factor 0.5)
    optimizer.zero_grad()
    scaler.backward((weight * 2.0).sum())
    assert scaler.step(optimizer)
    assert torch.allclose(weight.detach(), torch.full((4,), 0.8))  # a finite step is taken, unscaled: 1 - 0.1 x 2


def test_fp32_and_bf16_need_no_scaler_and_fp16_needs_a_gpu():
    assert GradientScaler(PRECISIONS.get("fp32"), "cpu").scaler is None
    assert GradientScaler(PRECISIONS.get("bf16"), "cpu").scaler is None
    assert check_precision("bf16", "cpu").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        check_precision("fp16", "cpu")


@pytest.mark.parametrize("argv", [
    ["submit", "--model", "nafnet", "--setting", "derain", "--precision", "fp16"],
    ["sweep", "--model", "nafnet", "--setting", "derain", "--precision", "fp16"],
    ["evaluate", "--model", "nafnet", "--weights", "missing.pth", "--setting", "derain", "--precision", "fp16"],
    ["submit", "--model", "nafnet", "--setting", "derain", "--precision", "fp8"],
], ids=["submit-fp16", "sweep-fp16", "evaluate-fp16", "unknown"])
def test_a_precision_the_device_cannot_do_is_refused_in_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORATION_BENCH_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/never.db")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert ("needs a CUDA GPU" in err) if "fp16" in argv else ("Valid precisions: bf16, fp16, fp32" in err)
    assert not (tmp_path / "never.db").exists()  # refused before anything was recorded


def failing_backend(graph, example_inputs):
    """A torch.compile backend that always fails, as a model the compiler cannot handle would."""
    raise RuntimeError("this backend compiles nothing")


def test_a_model_that_fails_to_compile_runs_eager_and_says_why(capsys):
    torch.manual_seed(0)
    model, x = torch.nn.Conv2d(3, 3, 3, padding=1), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        eager = model(x)
        compiler = Compiler(enabled=True, backend=failing_backend)
        with compiled(model, compiler) as guard:
            out = guard(lambda: model(x))
    assert torch.equal(out, eager)
    assert "this backend compiles nothing" in compiler.fallback and not compiler.active
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[compile]")]
    assert len(lines) == 1 and "Conv2d did not compile, running eager" in lines[0]
    assert "_compiled_call_impl" not in vars(model)  # eager again after the block


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's CPU backend (Inductor) needs a C++ compiler; none is installed")
def test_compiled_forward_equals_eager_within_1e_4():
    model, x = fresh_nafnet().eval(), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        eager = model(x)
        compiler = Compiler(enabled=True)
        with compiled(model, compiler) as guard:
            out = guard(lambda: model(x))
    assert compiler.fallback is None, compiler.fallback
    assert (out - eager).abs().max().item() <= 1e-4
