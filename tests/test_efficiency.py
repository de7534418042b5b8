"""Efficiency columns measured by the harness: MACs, parameters, latency, memory; logged and ranked."""
import json
import math
import re
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import zoo
from conftest import run_harness
from harness.scoring.efficiency import EfficiencyConfig, count_macs_and_memory, measure

ROOT = Path(__file__).resolve().parents[1]
aten = torch.ops.aten


class TwoConvs(nn.Module):
    pad_multiple = 1

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x, cond=None):
        return self.c2(torch.relu(self.c1(x)))


def test_measure_counts_macs_params_and_memory_of_a_known_network():
    e = measure(TwoConvs(), EfficiencyConfig(size=40, repeats=2))
    assert e.params == (3 * 16 * 9 + 16) + (16 * 3 * 9 + 3)
    assert e.macs == 40 * 40 * (16 * 3 * 9 + 3 * 16 * 9)  # one MAC per weight per output pixel
    # conv1's and relu's 16-channel outputs are alive together; nothing else is bigger
    assert e.peak_memory_mb * 2**20 == pytest.approx(2 * 16 * 40 * 40 * 4)
    assert e.input_size == "1x3x40x40" and e.latency_ms > 0
    assert set(e.metrics()) == {"efficiency.params", "efficiency.macs", "efficiency.latency_ms", "efficiency.peak_memory_mb"}


class StridedAttention(nn.Module):
    """A strided conv, a depthwise conv, channel attention by matrix products and a linear head."""

    pad_multiple = 1

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8, 4)

    def forward(self, x, cond=None):
        f = self.depthwise(self.down(x)).flatten(2)  # 1 x 8 x HW
        attention = torch.softmax(f @ f.transpose(1, 2), dim=-1)  # 1 x 8 x 8
        return self.head((attention @ f).mean(dim=2))


def test_measure_counts_the_macs_of_strides_groups_matrix_products_and_linear_layers():
    e = measure(StridedAttention(), EfficiencyConfig(size=40, repeats=1, warmup=0))
    hw = 20 * 20  # stride 2 halves 40 x 40
    by_hand = (
        hw * 8 * (3 * 3 * 3)  # strided conv: per output value, C_in x k x k
        + hw * 8 * (1 * 3 * 3)  # depthwise: C_in / groups = 1
        + 8 * hw * 8  # (8 x HW) @ (HW x 8)
        + 8 * 8 * hw  # (8 x 8) @ (8 x HW)
        + 8 * 4  # linear 8 -> 4
    )
    assert e.macs == by_hand


class TextbookMacs(TorchDispatchMode):
    """MACs by the textbook formulas, counted on the ATen calls a forward pass makes.

    A convolution does C_in/groups x k_h x k_w MACs per output value; a product of an m x k by a
    k x n matrix does m k n. Independent of PyTorch's FLOP registry that the harness uses.
    """

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op is aten.convolution:
            assert not args[6], "transposed convolution: no zoo model has one, no formula here"
            self.macs += out.numel() * math.prod(args[1].shape[1:])
        elif op in (aten.mm, aten.bmm):
            self.macs += args[0].numel() * args[1].shape[-1]
        elif op in (aten.addmm, aten.baddbmm):
            self.macs += args[1].numel() * args[2].shape[-1]
        return out


@pytest.mark.parametrize("name", [n for n in zoo.MODELS])
def test_every_zoo_model_is_measured(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny")
    e = measure(model, EfficiencyConfig(size=32, repeats=1, warmup=0))
    # Under no_grad (not inference mode) composite ops such as conv2d and linear reach the
    # dispatch mode already decomposed into convolution / mm / addmm / bmm.
    textbook = TextbookMacs()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad(), textbook:
        model.eval()(x)
    assert e.macs == textbook.macs
    assert (e.macs == 0) == (name == "identity")
    if name == "restormer":  # convolutions and channel attention: MACs grow with the pixel count
        assert measure(model, EfficiencyConfig(size=64, repeats=1, warmup=0)).macs == 4 * e.macs


def _readme_gmacs_at_256():
    """The README's "Benchmarks" figures: model name -> GMACs at 256 x 256."""
    text = (ROOT / "README.md").read_text()
    sentence = re.search(r"At 256x256: (.*?)\.\n\n", text[text.index("### Benchmarks"):], re.DOTALL).group(1)
    return {name.lower(): float(g) for name, g in re.findall(r"(PromptIR|DaAIR|Restormer|AirNet) (\d+\.\d)", sentence)}


# Paper configurations at 256 x 256. Restormer, PromptIR and AirNet are counted on the meta
# device: shapes only, no arithmetic, and the same count as a real CPU pass (the benchmark's JSON
# came from real passes and agrees to the MAC); 0.6 / 0.8 / 1.4 s of CPU. DaAIR routes with
# torch.bincount, which has no meta kernel, so it needs a real forward pass (6-25 s here).
@pytest.mark.parametrize(
    "name",
    ["restormer", "promptir", pytest.param("airnet", marks=pytest.mark.slow), pytest.param("daair", marks=pytest.mark.slow)],
)
def test_paper_models_macs_at_256_match_the_readme_and_the_benchmark(name):
    readme = _readme_gmacs_at_256()
    assert set(readme) == {"promptir", "daair", "restormer", "airnet"}
    rows = json.loads((ROOT / "benchmarks/results/forward_cost_cpu_256_macs.json").read_text())["rows"]
    (row,) = [r for r in rows if r["model"] == name and r["variant"] == "paper" and not r["options"]]
    device = "cpu" if name == "daair" else "meta"
    torch.manual_seed(0)
    with torch.device(device):
        model = zoo.create_model(name, "paper").eval()
        x = torch.rand(1, 3, 256, 256)
    macs, _ = count_macs_and_memory(model, x)
    assert macs / 1e9 == pytest.approx(readme[name], rel=0.01)
    assert macs / 1e9 == pytest.approx(row["gmacs"], rel=0.01)


@pytest.mark.slow
def test_submit_logs_protocol_metrics_and_efficiency_and_the_leaderboard_shows_them(harness_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(harness_home / "torch"))  # no LPIPS weights there
    done = run_harness(["submit", "--model", "nafnet", "--setting", "derain", "--profile", "smoke", "--steps", "2",
                        "--metrics", "lpips,gmsd", "--efficiency-size", "64"], harness_home)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "metric 'lpips' skipped" in done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{harness_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("restoration-bench/derain")
    (run,) = client.search_runs([experiment.experiment_id])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["protocol.name"] == "promptir" and params["protocol.version"] == "1"
    assert params["run.metrics"] == "psnr,ssim,lpips,pyiqa.gmsd"
    assert tags["metrics.missing"] == "lpips" and "alexnet-owt-7be5be79.pth" in tags["metric_missing.lpips"]
    assert not any(k.startswith("lpips/") for k in metrics)  # missing, never a number
    assert 0 < metrics["pyiqa.gmsd/derain"] < 0.5 and metrics["pyiqa.gmsd/avg"] == metrics["pyiqa.gmsd/derain"]
    torch.manual_seed(0)
    expected = measure(zoo.create_model("nafnet", "tiny"), EfficiencyConfig(size=64, repeats=1, warmup=0))
    assert metrics["efficiency.params"] == expected.params and metrics["efficiency.macs"] == expected.macs
    assert metrics["efficiency.latency_ms"] > 0 and params["efficiency.input_size"] == "1x3x64x64"

    board = json.loads(run_harness(["leaderboard", "--setting", "derain", "--format", "json"], harness_home).stdout)
    (row,) = [r for r in board["rows"] if r["source"] == "reproduced"]
    assert row["params"] == expected.params and row["params_source"] == "run" and row["macs"] == expected.macs
