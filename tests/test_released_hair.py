"""HAIR's released checkpoint (toummHus/HAIR net/HAIR.py) loads into res_hair's "code" layout, as public."""
import json

import pytest
import torch
from released import inputs_and_output, meta, tolerance, write_released

import zoo
from zoo.released import ReleasedWeightsError
from zoo.released.hair import res_hair_release

CODE_COUNT = 28_559_846  # net/HAIR.py's HAIR() with its defaults (ARCHITECTURES.md, issue 17)
PAPER_COUNT = 29_938_568  # res_hair "paper", as before the code layout was added


@pytest.fixture(scope="module")
def hair_file(tmp_path_factory):
    """The fixture's checkpoint in its released container (a Lightning file with net.-prefixed keys)."""
    return write_released("hair", tmp_path_factory.mktemp("hair") / "hair.ckpt")


def test_released_hair_checkpoint_computes_the_public_output(hair_file):
    info = meta("hair")
    model = zoo.load_released("res_hair", hair_file, **info["args"])
    assert not model.training and model.pad_multiple == 8
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    (degraded,), expected = inputs_and_output("hair")
    with torch.no_grad():
        restored = model(degraded)
    difference = (restored - expected).abs().max().item()
    print(f"hair fixture: max|ours - public| = {difference:.3g} (tolerance {tolerance(expected):.3g})")
    assert difference <= tolerance(expected)


def test_code_configuration_has_the_public_parameter_count_and_paper_is_unchanged():
    assert zoo.parameter_count("res_hair", "code") == CODE_COUNT
    with torch.device("meta"):
        public_default = res_hair_release()  # the release's defaults are the public constructor's
    assert sum(p.numel() for p in public_default.parameters()) == CODE_COUNT
    # Weight Boxes of max(4, blocks) + 1 candidates, decoder level 3 max(4, blocks) (net/HAIR.py)
    boxes = {name: getattr(public_default, name).weight_box.shape[0]
             for name in ("latent", "decoder_level3", "decoder_level2", "decoder_level1", "refinement")}
    assert boxes == {"latent": 9, "decoder_level3": 6, "decoder_level2": 7, "decoder_level1": 5, "refinement": 5}
    assert zoo.parameter_count("res_hair", "paper") == PAPER_COUNT


def test_a_hair_checkpoint_loaded_as_restormer_names_res_hair(hair_file):
    with pytest.raises(ReleasedWeightsError, match="looks like a res_hair checkpoint"):
        zoo.load_released("restormer", hair_file)


def test_wrong_block_counts_are_refused_with_the_files_own(hair_file):
    with pytest.raises(ReleasedWeightsError, match=r"num_blocks=\[1, 1, 1, 1\], num_refinement_blocks=1: pass"):
        zoo.load_released("res_hair", hair_file)  # the defaults, [4, 6, 6, 8] and 4


def test_list_models_shows_both_res_hair_counts(capsys, monkeypatch, tmp_path):
    from harness.cli import main

    monkeypatch.setenv("RESTORATION_BENCH_CACHE", str(tmp_path / "cache"))
    assert main(["list", "models", "--format", "json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "res_hair")
    assert (row["paper_params"], row["other_params"]) == (PAPER_COUNT, {"code": CODE_COUNT})
    assert main(["list", "models"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("res_hair "))
    assert "29.94M" in line and "code 28.56M" in line
