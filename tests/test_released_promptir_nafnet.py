"""PromptIR's model.ckpt and NAFNet's .pth files (plain and NAFNetLocal) load into the zoo and match the public code."""
from __future__ import annotations

import pytest
import torch
from released import inputs_and_output, meta, released_state, tolerance, write_released

import zoo
from zoo.nafnet import LocalAvgPool2d, NAFNet, NAFNetConfig, to_local
from zoo.released import RELEASES, ReleasedWeightsError


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each fixture's checkpoint written once, in the container its authors release it in."""
    folder = tmp_path_factory.mktemp("released")
    return {name: write_released(name, folder / f"{name}-{meta(name)['file']}")
            for name in ("promptir", "nafnet", "nafnet_local")}


def max_difference(model, folder: str) -> tuple[float, float]:
    """max|ours - public output| on input0, and the fixture's tolerance."""
    (image,), expected = inputs_and_output(folder)
    with torch.no_grad():
        ours = model(image)
    return (ours - expected).abs().max().item(), tolerance(expected)


@pytest.mark.parametrize("folder", ["promptir", "nafnet", "nafnet_local"])
def test_release_matches_public_code(folder, checkpoints):
    info = meta(folder)
    model = zoo.load_released(info["model"], checkpoints[folder], **info["args"])
    assert not model.training
    difference, bound = max_difference(model, folder)
    print(f"{folder}: max difference {difference:.2e} (tolerance {bound:.2e})")
    assert difference <= bound


def test_nafnet_local_fixture_needs_the_local_converter(checkpoints):
    args = dict(meta("nafnet_local")["args"])
    local = zoo.load_released("nafnet", checkpoints["nafnet_local"], **args)
    blocks = sum(args["enc_blk_nums"]) + args["middle_blk_num"] + sum(args["dec_blk_nums"])
    assert sum(isinstance(m, LocalAvgPool2d) for m in local.modules()) == blocks  # one pooling per NAFBlock
    plain_args = {k: v for k, v in args.items() if k not in ("train_size", "fast_imp")}
    plain = zoo.load_released("nafnet", checkpoints["nafnet_local"], **plain_args)
    assert not any(isinstance(m, LocalAvgPool2d) for m in plain.modules())
    plain_difference, bound = max_difference(plain, "nafnet_local")
    local_difference, _ = max_difference(local, "nafnet_local")
    print(f"nafnet_local: plain NAFNet {plain_difference:.2e}, NAFNetLocal {local_difference:.2e}")
    assert plain_difference > 10 * bound and local_difference <= bound


def test_local_windows_follow_the_training_crop():
    # local_arch.py: int(1.5 x 32) = 48 at full resolution, halved per level; fast_imp's stride cap 5 x size/32.
    model = to_local(NAFNet(NAFNetConfig(width=8, encoder_blocks=(1, 1), middle_blocks=1, decoder_blocks=(1, 1))),
                     (1, 3, 32, 32), fast_imp=True)
    pools = [block.sca[0] for stage in [*model.encoders, model.middle, *model.decoders] for block in stage]
    assert [p.kernel for p in pools] == [(48, 48), (24, 24), (12, 12), (24, 24), (48, 48)]
    assert [p.max_stride for p in pools] == [(5, 5), (2, 2), (1, 1), (2, 2), (5, 5)]
    with pytest.raises(ValueError, match="already local"):
        to_local(model, (1, 3, 32, 32))


def test_local_pool_is_global_when_the_window_covers_the_map_and_local_otherwise():
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(LocalAvgPool2d((12, 10))(x), x.mean(dim=(2, 3), keepdim=True).expand_as(x))
    local = LocalAvgPool2d((4, 4))(x)
    assert local.shape == x.shape
    # The window of the pixel (5, 5) spans rows and columns 4..7 (even window: one more pixel after it).
    assert torch.allclose(local[:, :, 5, 5], x[:, :, 4:8, 4:8].mean(dim=(2, 3)))
    fast = LocalAvgPool2d((4, 4), fast_imp=True, max_stride=(1, 1))(x)
    # With stride 1 and an even window the fast sums hit the same windows away from the border.
    assert torch.allclose(fast[:, :, 2:-2, 2:-2], local[:, :, 2:-2, 2:-2], atol=1e-6)
    assert torch.allclose(LocalAvgPool2d((8, 8), fast_imp=True)(torch.full((1, 1, 20, 20), 0.3)),
                          torch.full((1, 1, 20, 20), 0.3))


def test_nafnet_fast_imp_runs_close_to_the_exact_local_model(checkpoints):
    args = {**meta("nafnet_local")["args"], "fast_imp": True}
    fast = zoo.load_released("nafnet", checkpoints["nafnet_local"], **args)
    assert all(m.fast_imp for m in fast.modules() if isinstance(m, LocalAvgPool2d))
    difference, _ = max_difference(fast, "nafnet_local")
    print(f"nafnet_local with fast_imp=True: max difference {difference:.2e} (a non-equivalent approximation)")
    assert difference < 0.1


def test_promptir_drops_only_the_unused_convolutions(checkpoints):
    model = zoo.load_released("promptir", checkpoints["promptir"], **meta("promptir")["args"])
    state, ours = released_state("promptir"), model.state_dict()
    unused = [k for k in state if k.startswith(("chnl_reduce", "reduce_noise_channel_"))]
    assert len(unused) == 6 and len(ours) == len(state) - 6
    assert torch.equal(ours["prompt3.generate.components"], state["prompt3.prompt_param"][0])
    assert torch.equal(ours["prompt1.interact.attn.temperature"], state["noise_level1.attn.temperature"])
    assert torch.equal(ours["prompt2.reduce.weight"], state["reduce_noise_level2.weight"])
    assert torch.equal(ours["prompt1.generate.weights.bias"], state["prompt1.linear_layer.bias"])


def test_promptir_file_loaded_as_restormer_names_promptir(checkpoints):
    args = {k: v for k, v in meta("promptir")["args"].items() if k != "decoder"}
    with pytest.raises(ReleasedWeightsError, match="looks like an? promptir checkpoint"):
        zoo.load_released("restormer", checkpoints["promptir"], **args)


def test_promptir_refuses_what_the_public_code_cannot_run(checkpoints):
    args = meta("promptir")["args"]
    with pytest.raises(ReleasedWeightsError, match="decoder=False"):
        zoo.load_released("promptir", checkpoints["promptir"], **{**args, "decoder": False})
    with pytest.raises(ReleasedWeightsError, match="dim=32"):
        zoo.load_released("promptir", checkpoints["promptir"], **{**args, "dim": 32})
    with pytest.raises(ReleasedWeightsError, match=r"PromptIR with num_blocks=\[1, 1, 1, 1\]: pass those"):
        zoo.load_released("promptir", checkpoints["promptir"], **{k: v for k, v in args.items() if k != "num_blocks"})


def test_release_defaults_are_the_main_configurations():
    promptir = RELEASES.get("promptir").public_defaults()
    assert promptir["dim"] == 48 and list(promptir["num_blocks"]) == [4, 6, 6, 8] and promptir["decoder"] is True
    assert promptir["num_refinement_blocks"] == 4 and list(promptir["heads"]) == [1, 2, 4, 8]
    nafnet = RELEASES.get("nafnet").public_defaults()
    assert nafnet["width"] == 64 and list(nafnet["enc_blk_nums"]) == [1, 1, 1, 28] and nafnet["middle_blk_num"] == 1
    assert "NAFNet-GoPro-width64.pth" in RELEASES.get("nafnet").files
    assert RELEASES.get("promptir").files == ("model.ckpt",)


def test_nafnet_wrong_width_names_the_shape_mismatch(checkpoints):
    args = {**meta("nafnet")["args"], "width": 32}
    with pytest.raises(ReleasedWeightsError) as error:
        zoo.load_released("nafnet", checkpoints["nafnet"], **args)
    message = str(error.value)
    print(message)
    assert "shape mismatch" in message and "intro.weight: file (16, 3, 3, 3), model (32, 3, 3, 3)" in message
    assert "width=16" in message


def test_nafnet_greyscale_is_refused(checkpoints):
    with pytest.raises(ReleasedWeightsError, match="img_channel=1"):
        zoo.load_released("nafnet", checkpoints["nafnet"], **{**meta("nafnet")["args"], "img_channel": 1})


def test_nafnet_file_loaded_as_promptir_names_nafnet(checkpoints):
    with pytest.raises(ReleasedWeightsError, match="looks like an? nafnet checkpoint"):
        zoo.load_released("promptir", checkpoints["nafnet"])
