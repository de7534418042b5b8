"""Efficiency columns measured by the harness: MACs, parameters, latency, memory; logged and ranked."""
import json

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

import zoo
from conftest import run_harness
from harness.scoring.efficiency import EfficiencyConfig, measure


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


@pytest.mark.parametrize("name", [n for n in zoo.MODELS])
def test_every_zoo_model_is_measured(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny")
    e = measure(model, EfficiencyConfig(size=32, repeats=1, warmup=0))
    assert e.params == zoo.parameter_count(name, "tiny")
    assert (e.macs == 0) == (name == "identity")
    if name == "restormer":  # convolutions and channel attention: MACs grow with the pixel count
        assert measure(model, EfficiencyConfig(size=64, repeats=1, warmup=0)).macs == 4 * e.macs


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
