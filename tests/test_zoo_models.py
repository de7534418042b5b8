"""Model zoo I: Restormer, PromptIR, NAFNet, HAIR as a plug-in (Res-HAIR, NAFNet-HAIR)."""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import zoo
from harness.scoring.evaluation import restore
from zoo.hair import ConvGeometry, Hair, mixed_conv2d

TRAINABLE = ["restormer", "promptir", "nafnet", "res_hair", "nafnet_hair"]
HAIR_MODELS = ["res_hair", "nafnet_hair"]


# Exact counts of the paper configurations as this zoo builds them (README "Models", and for
# Restormer and PromptIR the authors' public model definitions). An exact pin catches a wrong Weight
# Box size or block count that a band around the papers' rounded figures lets through: Res-HAIR
# built with N = [5, 5, 5, 9] instead of [5, 7, 7, 9] has 28.79M, inside 5% of HAIR's "29M".
PAPER_COUNTS = {
    "restormer": 26_126_644,
    "promptir": 35_376_967,
    "nafnet": 17_111_907,
    "res_hair": 29_938_568,
    "nafnet_hair": 22_396_735,
    "hyperres": 2_919_044,  # 2,588,483 main network + 330,561 level estimator (the authors' NoiseNet)
    "nafnet_ads": 18_881_824,  # 18,640,605 NAFNet with its added filters + 241,219 classifier
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_variants_have_exactly_the_documented_parameter_counts(name):
    assert zoo.parameter_count(name, "paper") == PAPER_COUNTS[name]


@pytest.mark.parametrize(
    "name,published",
    [
        ("restormer", 26.1e6),  # Restormer paper; HAIR Tab. 1 "26M"
        ("promptir", 35.6e6),  # PromptIR's model.py builds 35.59M; HAIR Tab. 1 "36M"
        ("nafnet", 17.1e6),  # HAIR Tab. 2 "17M"
        ("res_hair", 29e6),  # HAIR Tab. 1 "29M"
    ],
)
def test_paper_variants_match_the_papers_parameter_counts(name, published):
    # The papers print rounded figures: a second, coarser check next to the exact pins above.
    assert zoo.parameter_count(name, "paper") == PAPER_COUNTS[name] == pytest.approx(published, rel=0.05)


def test_hair_adds_about_three_million_parameters_to_restormer():
    added = zoo.parameter_count("res_hair") - zoo.parameter_count("restormer")
    assert added == PAPER_COUNTS["res_hair"] - PAPER_COUNTS["restormer"] == 3_811_924
    assert 2.5e6 < added < 4.5e6  # HAIR Tab. 1: Restormer 26M -> Res-HAIR 29M


def test_readme_models_table_prints_the_zoos_counts():
    """The README's parameter column is each paper configuration's count in millions, 2 decimals."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (.*) \|$", readme, flags=re.MULTILINE))
    printed = {name: re.findall(r"(\d+\.\d\d)M", row.rsplit("|", 1)[-1]) for name, row in rows.items()}
    assert set(zoo.list_models()) - {"identity"} <= set(printed)

    def millions(count):
        return f"{count / 1e6:.2f}"

    for name in set(zoo.list_models()) - {"identity", "hyperres"}:
        assert printed[name][0] == millions(zoo.parameter_count(name, "paper")), name
    # HyperRes is printed as main network (+ level estimator).
    with torch.device("meta"):
        hyperres = zoo.create_model("hyperres", "paper")
    estimator = sum(p.numel() for p in hyperres.estimator.parameters())
    assert printed["hyperres"] == [millions(zoo.parameter_count("hyperres") - estimator), millions(estimator)]
    # DaAIR's row gives the count with 5 degradation kinds in its configuration column.
    assert f"{millions(zoo.parameter_count('daair', 'paper', degradation_types=5))}M with 5" in rows["daair"]


def test_restormer_is_exactly_the_published_trunk():
    # Restormer's own model built from its public definition has 26,126,644 parameters.
    assert zoo.parameter_count("restormer") == 26_126_644


def test_list_models_json_shows_parameter_counts(harness_home):
    import json

    from conftest import run_harness

    result = run_harness(["list", "models", "--format", "json"], harness_home, timeout=120)
    models = {m["name"]: m for m in json.loads(result.stdout)}
    assert set(TRAINABLE) <= set(models)
    assert models["res_hair"]["paper_params"] == zoo.parameter_count("res_hair")
    assert models["restormer"]["tiny_params"] < models["restormer"]["paper_params"] / 10


@pytest.mark.parametrize("name", TRAINABLE)
def test_tiny_model_restores_sizes_that_are_not_multiples_of_eight(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny").eval()
    x = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        y = restore(model, x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)  # a real network, not a pass-through


@pytest.mark.parametrize("name", TRAINABLE + ["daair", "airnet", "airnet_hair"])
def test_a_samples_output_does_not_depend_on_the_rest_of_its_batch(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny").eval()
    batch = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model(batch[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", HAIR_MODELS)
def test_selecting_vectors_sum_to_one_and_depend_on_the_input(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny").eval()
    assert isinstance(model, Hair)
    smooth = torch.full((1, 3, 32, 32), 0.5) + 0.05 * torch.linspace(0, 1, 32)
    noisy = (smooth + 0.3 * torch.randn_like(smooth)).clamp(0, 1)
    with torch.no_grad():
        model(torch.cat([smooth, noisy]))
    selections = model.selections()
    assert set(selections) == {p for level in model.plan.levels for p in level.blocks}
    for path, v in selections.items():
        level = next(lv for lv in model.plan.levels if path in lv.blocks)
        assert v.shape == (2, level.candidates)
        torch.testing.assert_close(v.sum(dim=1), torch.ones(2))
        assert (v > 0).all()
    # Different degradations, different selections (HAIR Sec. 3.3.1); at initialisation the
    # differences are small (NAFNet even starts with its blocks switched off), but not zero,
    # and every selecting vector is a differentiable function of the pixels.
    assert all((v[0] - v[1]).abs().max() > 1e-7 for v in selections.values())
    assert model.last_giv.shape == (2, model.plan.giv_channels)
    image = noisy.clone().requires_grad_(True)
    captured = []
    first_block = next(iter(model.hyper_blocks.values()))
    first_block.selector.register_forward_hook(lambda module, inputs, output: captured.append(output))
    model(image)
    (gradient,) = torch.autograd.grad(captured[0][0, 0], image)
    assert gradient.abs().sum() > 0


@pytest.mark.parametrize("application", ["grouped", "distributive"])
@pytest.mark.parametrize(
    "cin,cout,kernel,groups,bias",
    [(6, 12, 1, 1, False), (12, 12, 3, 12, False), (8, 6, 3, 2, True), (4, 8, 3, 1, True)],
)
def test_batched_hypertrans_convolution_equals_the_weighted_sum_of_n_convolutions(
    application, cin, cout, kernel, groups, bias
):
    torch.manual_seed(0)
    batch, n = 3, 5
    x = torch.randn(batch, cin, 11, 9)
    candidates = torch.randn(n, cout, cin // groups, kernel, kernel)
    bias_candidates = torch.randn(n, cout) if bias else None
    selection = torch.softmax(torch.randn(batch, n), dim=1)
    geometry = ConvGeometry(stride=(1, 1), padding=(kernel // 2, kernel // 2), dilation=(1, 1), groups=groups)
    y = mixed_conv2d(x, selection, candidates, bias_candidates, geometry, application)
    # Eq. 7 written out: sum_i v_i (x * W_i), one sample and one candidate at a time.
    expected = torch.stack([
        sum(selection[b, i] * F.conv2d(x[b : b + 1], candidates[i], None if bias_candidates is None else bias_candidates[i],
                                       padding=kernel // 2, groups=groups)[0] for i in range(n))
        for b in range(batch)
    ])
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


def test_both_weight_applications_give_the_same_network():
    torch.manual_seed(0)
    grouped = zoo.create_model("res_hair", "tiny", application="grouped").eval()
    distributive = zoo.create_model("res_hair", "tiny", application="distributive").eval()
    distributive.load_state_dict(grouped.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), distributive(x), atol=1e-5, rtol=1e-4)


def test_hair_generates_every_convolution_of_the_hyper_blocks_and_only_those():
    model = zoo.create_model("res_hair", "tiny")
    names = [n for n, _ in model.named_parameters()]
    # No ordinary convolution weight is left inside a hyper block; its LayerNorms and
    # attention temperatures stay ordinary parameters (authors' HAIR.py).
    hyper = [n for n in names if n.startswith(("host.latent.module.", "host.decoder_level", "host.refinement."))]
    assert hyper and not any(".weight" in n and ("qkv" in n or "project" in n or "dwconv" in n) for n in hyper)
    assert any(n.endswith("temperature") for n in hyper)
    assert any(n.startswith("host.encoder_level1.0.attn.qkv") for n in names)  # the first half is untouched
    boxes = dict(model.weight_boxes.named_parameters())
    assert boxes["latent.weights.attn__qkv"].shape[0] == 3  # N candidates, tiny variant


def test_hair_attaches_to_a_host_it_does_not_know():
    """The plug-in needs only module paths: a toy host with two stages of conv blocks works."""
    from torch import nn

    from zoo.hair import HairPlan, HyperLevel

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return x + torch.relu(self.conv(x))

    class Host(zoo.RestorationModel):
        def __init__(self):
            super().__init__()
            self.head, self.first, self.second, self.tail = nn.Conv2d(3, 8, 3, padding=1), Block(), nn.Sequential(Block(), Block()), nn.Conv2d(8, 3, 1)

        def forward(self, x, cond=None):
            return self.tail(self.second(self.first(self.head(x))))

    model = Hair(Host(), HairPlan(tap="second", tap_channels=8, giv_channels=16,
                                  levels=(HyperLevel("second", ("second.0", "second.1"), 4),)))
    y = model(torch.rand(2, 3, 16, 16))
    assert y.shape == (2, 3, 16, 16)
    assert model.weight_boxes["second"].weights["conv"].shape == (4, 8, 8, 3, 3)
    assert set(model.selections()) == {"second.0", "second.1"}


@pytest.mark.parametrize("name", TRAINABLE)
def test_tiny_variant_training_loss_falls(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, "tiny")
    clean = torch.rand(4, 3, 32, 32)
    degraded = (clean + 0.2 * torch.randn_like(clean)).clamp(0, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(15):
        loss = F.l1_loss(model(degraded), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.8 * losses[0], losses


def test_checkpoint_round_trip_of_a_hair_model(tmp_path):
    from harness.runs.checkpoints import load_weights, save_weights

    torch.manual_seed(0)
    model = zoo.create_model("res_hair", "tiny").eval()
    save_weights(model, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    other = zoo.create_model("res_hair", "tiny").eval()
    load_weights(other, tmp_path / "w.safetensors")
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x))
