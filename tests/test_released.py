"""Released checkpoints: containers are read safely, keys map strictly, and bad files are refused.

The per-model fixtures (tests/fixtures/released/) rebuild each authors' checkpoint with the fill
rule and compare our forward pass with the output of the authors' public code.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from released import inputs_and_output, meta, released_state, tolerance, write_released
from zoo.released import CheckpointReadError, ReleasedWeightsError, read_state_dict


def restore(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The model's eval-mode output for one input."""
    with torch.no_grad():
        return model(image)


@pytest.mark.parametrize("folder", ["restormer_withbias", "restormer_biasfree"])
def test_restormer_release_matches_public_code(folder, tmp_path):
    path = write_released(folder, tmp_path / "restormer.pth")
    model = zoo.load_released("restormer", path, **meta(folder)["args"])
    assert not model.training
    (image,), expected = inputs_and_output(folder)
    difference = (restore(model, image) - expected).abs().max().item()
    print(f"{folder}: max difference {difference:.2e}")
    assert difference <= tolerance(expected)


@pytest.mark.parametrize("container", ["basicsr", "lightning", "state_dict", "plain", "safetensors"])
def test_every_container_yields_the_same_state(container, tmp_path):
    state = released_state("restormer_withbias")
    suffix = ".safetensors" if container == "safetensors" else ".pth"  # the reader picks safetensors by suffix
    read = read_state_dict(write_released("restormer_withbias", tmp_path / f"weights{suffix}", container))
    assert sorted(read) == sorted(state)  # safetensors stores keys sorted
    assert all(torch.equal(read[k], state[k]) for k in state)


def test_basicsr_params_ema_only_file_loads(tmp_path):
    state = released_state("restormer_withbias")
    torch.save({"params_ema": state}, tmp_path / "ema.pth")
    read = read_state_dict(tmp_path / "ema.pth")
    assert all(torch.equal(read[k], state[k]) for k in state)


def test_lightning_file_with_namespace_hyper_parameters_loads(tmp_path):
    """torch.load(weights_only=True) refuses the Namespace; the restricted reader keeps the tensors."""
    state = released_state("restormer_withbias")
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in state.items()},
                "hyper_parameters": {"opt": argparse.Namespace(lr=2e-4, de_type=["denoise_15"])}}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)
    model = zoo.load_released("restormer", path, **meta("restormer_withbias")["args"])
    (image,), expected = inputs_and_output("restormer_withbias")
    assert (restore(model, image) - expected).abs().max().item() <= tolerance(expected)


class _RunsCode:
    """Unpickling this runs a shell command that leaves a file behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"params": released_state("restormer_withbias"), "extra": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointReadError, match="refused"):
        zoo.load_released("restormer", path, **meta("restormer_withbias")["args"])
    assert not marker.exists()


def test_truncated_file_is_refused_naming_it(tmp_path):
    path = write_released("restormer_withbias", tmp_path / "restormer.pth")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointReadError, match=r"restormer\.pth.*truncated"):
        zoo.load_released("restormer", path, **meta("restormer_withbias")["args"])


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(released_state("restormer_withbias"), str(path))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointReadError, match=r"w\.safetensors"):
        read_state_dict(path)


def test_bias_free_file_loaded_as_with_bias_names_the_fix(tmp_path):
    path = write_released("restormer_biasfree", tmp_path / "restormer.pth")
    args = dict(meta("restormer_biasfree")["args"], LayerNorm_type="WithBias")
    with pytest.raises(ReleasedWeightsError) as error:
        zoo.load_released("restormer", path, **args)
    message = str(error.value)
    assert "missing" in message and "norm1.norm.bias" in message
    assert "LayerNorm_type=BiasFree" in message


def test_width_mismatch_names_the_shapes(tmp_path):
    path = write_released("restormer_withbias", tmp_path / "restormer.pth")
    args = dict(meta("restormer_withbias")["args"], dim=24)
    with pytest.raises(ReleasedWeightsError, match=r"shape mismatch.*patch_embed\.weight: file \(16, 3, 3, 3\), model \(24, 3, 3, 3\)"):
        zoo.load_released("restormer", path, **args)


def test_greyscale_release_is_refused(tmp_path):
    path = write_released("restormer_withbias", tmp_path / "restormer.pth")
    with pytest.raises(ReleasedWeightsError, match="greyscale"):
        zoo.load_released("restormer", path, **dict(meta("restormer_withbias")["args"], inp_channels=1, out_channels=1))


def test_unknown_public_argument_lists_the_valid_ones(tmp_path):
    path = write_released("restormer_withbias", tmp_path / "restormer.pth")
    with pytest.raises(ReleasedWeightsError, match=r"unknown public argument\(s\) \['width'\].*LayerNorm_type"):
        zoo.load_released("restormer", path, width=16)


def test_unknown_model_lists_the_released_ones(tmp_path):
    with pytest.raises(LookupError, match="restormer"):
        zoo.load_released("restormerr", tmp_path / "x.pth")


def test_extra_file_tensor_is_refused(tmp_path):
    state = released_state("restormer_withbias")
    state["stray.weight"] = torch.zeros(2)
    torch.save({"params": state}, tmp_path / "extra.pth")
    with pytest.raises(ReleasedWeightsError, match="1 file tensor.*stray.weight"):
        zoo.load_released("restormer", tmp_path / "extra.pth", **meta("restormer_withbias")["args"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointReadError, match="does not exist"):
        zoo.load_released("restormer", tmp_path / "absent.pth")
