"""Model registry, configurations and the NAFNet architecture."""
import pytest
import torch

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


def test_nafnet_starts_as_identity_and_learns_a_residual():
    # beta = gamma = 0 at initialisation switch every block off: output = ending(intro(x)) + x.
    model = zoo.create_model("nafnet", "tiny")
    x = torch.rand(1, 3, 32, 32)
    before = model(x)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, zoo.nafnet.NAFBlock):
                block.beta.fill_(1.0)
                block.gamma.fill_(1.0)
    assert not torch.allclose(model(x), before)


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
