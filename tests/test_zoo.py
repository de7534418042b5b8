"""Model registry, configurations and the NAFNet architecture."""
import copy

import pytest
import torch
import torch.nn.functional as F

import zoo
from harness.scoring.evaluation import restore


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_nafnet_paper_configuration_matches_published_size():
    # megvii-research/NAFNet GoPro width-32 model: 17,111,907 parameters (../shared/ARCHITECTURES.md)
    assert n_params(zoo.create_model("nafnet", "paper")) == 17_111_907


def test_every_model_has_a_tiny_variant_that_restores_any_size():
    torch.manual_seed(0)
    for name in zoo.list_models():
        model = zoo.create_model(name, "tiny").eval()
        assert n_params(model) < 2_000_000
        x = torch.rand(2, 3, 37, 53)  # not a multiple of any model's padding
        with torch.no_grad():
            y = restore(model, x)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_identity_returns_its_input():
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(zoo.create_model("identity")(x), x)


def test_nafnet_blocks_start_as_identity_and_the_network_learns_a_residual():
    """NAFNet's blocks start switched off (beta = gamma = 0) and its output is input + residual."""
    torch.manual_seed(0)
    model = zoo.create_model("nafnet", "tiny")
    blocks = [m for m in model.modules() if isinstance(m, zoo.nafnet.NAFBlock)]
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        for block in blocks:  # each block maps its input to itself, exactly
            features = torch.randn(2, block.beta.shape[1], 8, 8)
            assert torch.equal(block(features), features)
        before = model(x)
        # So the network at initialisation is the same network with its blocks taken out ...
        bare = copy.deepcopy(model)
        for name, module in list(bare.named_modules()):
            if isinstance(module, zoo.nafnet.NAFBlock):
                parent, _, child = name.rpartition(".")
                setattr(bare.get_submodule(parent), child, torch.nn.Identity())
        assert torch.equal(bare(x), before)
        # ... and its output is the input plus what the last convolution adds (global residual).
        silent = copy.deepcopy(model)
        silent.ending.weight.zero_()
        silent.ending.bias.zero_()
        assert torch.equal(silent(x), x)

    # A degradation that only a residual undoes: every pixel 0.3 brighter. 30 Adam steps learn
    # it (1.3 s of one CPU thread); held-out images come out far closer to clean than the input.
    def brightened(n):
        clean = 0.6 * torch.rand(n, 3, 16, 16)
        return clean + 0.3, clean

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a second thread only spins
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(30):
            degraded, clean = brightened(4)
            loss = F.l1_loss(model(degraded), clean)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        degraded, clean = brightened(4)
        with torch.no_grad():
            restored = model(degraded)
    finally:
        torch.set_num_threads(threads)
    assert F.l1_loss(restored, clean) < 0.25 * F.l1_loss(degraded, clean)  # identity's error is 0.3
    assert (restored - degraded).mean().item() == pytest.approx(-0.3, abs=0.05)
    assert all(b.beta.abs().max() > 0 and b.gamma.abs().max() > 0 for b in blocks)  # the blocks switched on


def test_overrides_and_errors_name_what_is_valid():
    assert zoo.create_model("nafnet", "tiny", width=8).intro.out_channels == 8
    with pytest.raises(ValueError, match="no option.*'widht'.*width"):
        zoo.create_model("nafnet", "tiny", widht=8)
    with pytest.raises(zoo.UnknownNameError, match="Did you mean 'nafnet'"):
        zoo.create_model("nafnett")
    with pytest.raises(zoo.UnknownNameError, match="paper, tiny"):
        zoo.create_model("nafnet", "huge")


def test_zoo_imports_nothing_of_ray_mlflow_or_streamlit():
    import subprocess
    import sys

    code = "import sys, zoo; zoo.create_model('nafnet', 'tiny'); print([m for m in ('ray', 'mlflow', 'streamlit', 'harness') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
