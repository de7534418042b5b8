"""HyperRes' released checkpoints (issue 17): the main network and the NoiseNet level estimator."""
import numpy as np
import pytest
import torch

import zoo
from released import inputs_and_output, meta, tolerance, write_released
from zoo import Conditioning
from zoo.released import ReleasedWeightsError, load_released


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The two fixture checkpoints in their released containers, under their published names."""
    folder = tmp_path_factory.mktemp("hyperres_released")
    return (write_released("hyperres", folder / "noise_4.pth"),
            write_released("hyperres_noisenet", folder / "noise_detect.pth"))


def test_main_network_computes_the_public_function_at_each_level(files):
    main, _ = files
    model = load_released("hyperres", main, estimator=None, meta_blocks=2)
    assert not model.training
    inputs, output = inputs_and_output("hyperres")
    levels = meta("hyperres")["args"]["level"]  # 0-255, divided by norm_factor 255 in the public code
    with torch.no_grad():
        ours = torch.cat([model(x, Conditioning(level=torch.tensor([level / 255]))) for x, level in zip(inputs, levels)])
    assert (ours - output).abs().max().item() <= tolerance(output)


def test_released_noisenet_reads_sigma_and_estimate_level_is_sigma_over_255(files):
    main, estimator = files
    for path in (None, main):
        model = load_released("hyperres", path, estimator=estimator, meta_blocks=2)
        (crops,), output = inputs_and_output("hyperres_noisenet")
        assert crops.shape[-2:] == (128, 128)
        with torch.no_grad():
            sigma, level = model.estimator(crops), model.estimate_level(crops)
        assert (sigma - output.reshape(-1)).abs().max().item() <= tolerance(output)
        assert (level - output.reshape(-1) / 255).abs().max().item() <= tolerance(output) / 255


def test_the_estimator_is_the_authors_noisenet():
    model = zoo.create_model("hyperres", "paper")
    assert sum(p.numel() for p in model.estimator.parameters()) == 330_561  # models/NoiseNet.py


def test_estimate_level_is_the_median_over_a_fixed_grid_of_crops():
    torch.manual_seed(0)
    model = zoo.create_model("hyperres", "tiny").eval()
    with torch.no_grad():
        model.estimator.fc_seq[-1].bias.fill_(0.2)  # readings spread around a level, not around 0
        images = torch.rand(2, 3, 256, 384)
        one_by_one = torch.stack([
            torch.stack([model.estimator.level(images[b:b + 1, :, r:r + 128, c:c + 128])[0]
                         for r in (0, 128) for c in (0, 128, 256)]) for b in range(2)])
        estimate = model.estimate_level(images)
        assert torch.equal(estimate, model.estimate_level(images))  # deterministic
    assert len(set(one_by_one[0].tolist())) == 6  # six different readings, so the median is meaningful
    torch.testing.assert_close(estimate, torch.from_numpy(np.median(one_by_one.numpy(), axis=1)), atol=1e-6, rtol=0)
    # A side shorter than 128 is reflect-padded; any size gives one reading per image.
    with torch.no_grad():
        assert model.estimate_level(torch.rand(3, 3, 40, 300)).shape == (3,)


def test_a_noisenet_file_as_the_main_network_is_refused(files):
    _, estimator = files
    with pytest.raises(ReleasedWeightsError, match=r"level estimator.*estimator="):
        load_released("hyperres", estimator, meta_blocks=2)


def test_a_main_network_file_as_the_estimator_is_refused(files):
    main, _ = files
    with pytest.raises(ReleasedWeightsError, match="main network"):
        load_released("hyperres", None, estimator=main, meta_blocks=2)


def test_a_depth_mismatch_names_the_files_meta_blocks(files):
    main, _ = files
    with pytest.raises(ReleasedWeightsError, match="pass meta_blocks=2"):
        load_released("hyperres", main, meta_blocks=3)


def test_a_greyscale_release_is_refused(files):
    main, _ = files
    with pytest.raises(ReleasedWeightsError, match="greyscale"):
        load_released("hyperres", main, meta_blocks=2, gray=True)


def test_the_public_constructor_arguments_load_and_unknown_ones_are_refused(files):
    main, _ = files
    model = load_released("hyperres", main, **meta("hyperres")["args"])  # level and norm_factor as published
    assert len(model.blocks) == 2
    with pytest.raises(ReleasedWeightsError, match="unknown public argument"):
        load_released("hyperres", main, meta_blocks=2, width=64)
    with pytest.raises(ReleasedWeightsError, match="give a main network file"):
        load_released("hyperres", None)
