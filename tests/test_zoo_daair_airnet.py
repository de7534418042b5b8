"""Model zoo II: DaAIR (routing, EMA controllers), AirNet (contrastive stages), AirNet-HAIR."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

import zoo
from harness.runs.config import RunConfig
from harness.data import open_data
from harness.runs.profiles import PROFILES
from harness.settings import get_setting
from harness.runs.training import train
from zoo.airnet import sampled_deform_conv2d
from zoo.contract import Conditioning, TrainingStage
from zoo.daair import DecoderBlock

NEW = ["daair", "airnet", "airnet_hair"]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------
# Parameter counts


@pytest.mark.parametrize("kinds,exact", [(3, 6_088_430), (5, 6_453_138)])
def test_daair_paper_variant_has_about_six_million_parameters(kinds, exact):
    count = zoo.parameter_count("daair", "paper", degradation_types=kinds)
    # Exact: the README's 6.09M / 6.45M; each further expert adds the same low-rank weights.
    assert count == exact
    # DaAIR Tab. 1 (three degradations) and Tab. 2 (five) both give "6M", rounded to the million.
    assert round(count / 1e6) == 6


def test_each_daair_expert_adds_the_same_number_of_parameters():
    counts = [zoo.parameter_count("daair", "paper", degradation_types=k) for k in (3, 4, 5)]
    assert counts[1] - counts[0] == counts[2] - counts[1] == (6_453_138 - 6_088_430) // 2


def test_airnet_paper_variant_matches_the_published_model():
    model = zoo.create_model("airnet", "paper")
    # The authors' code builds 8,930,313 parameters (ARCHITECTURES.md): the "9M" of DaAIR Tab. 1-2
    # and HAIR Tab. 4, counting the MoCo key encoder.
    assert n_params(model) == 8_930_313 == pytest.approx(9e6, rel=0.05)
    assert (n_params(model.restorer), n_params(model.encoder)) == (6_290_441, 1_319_936)
    # Without the key encoder (training-only), the network that restores has the paper's 7.6M.
    assert n_params(model) - n_params(model.key_encoder) == pytest.approx(7.6e6, rel=0.05)


def test_airnet_hair_matches_hair_table_4():
    count = zoo.parameter_count("airnet_hair", "paper")
    assert count == 10_358_804  # README "Models": 10.36M
    assert count == pytest.approx(10e6, rel=0.05)  # HAIR Tab. 4: 10M


@pytest.mark.slow  # spawns the CLI; test_zoo_models.py checks `list models` in the fast tier
def test_list_models_json_shows_the_new_models(harness_home):
    from conftest import run_harness

    result = run_harness(["list", "models", "--format", "json"], harness_home, timeout=180)
    models = {m["name"]: m for m in json.loads(result.stdout)}
    for name in NEW:
        assert models[name]["paper_params"] == zoo.parameter_count(name, "paper")
        assert models[name]["tiny_params"] < models[name]["paper_params"] / 10
    assert models["airnet"]["paper_params"] == 8_930_313


# ----------------------------------------------------------------------------------------------
# Settings carry each sample's degradation kind to the model


def test_settings_name_their_degradation_kinds_and_samples_carry_them():
    three = get_setting("three_deg")
    assert three.degradation_kinds == ["haze", "rain", "gaussian_noise"]  # sigma 15/25/50 share one kind
    assert len(get_setting("five_deg").degradation_kinds) == 5
    data = open_data(three).training_set(16, 12, seed=0)
    for i in range(12):
        item = data[i]
        task = three.tasks[int(item["task_index"])]
        assert three.degradation_kinds[int(item["degradation_index"])] == task.degradation.kind


def test_daair_gets_one_expert_per_degradation_kind_of_the_setting():
    for setting, kinds in [("three_deg", 3), ("five_deg", 5)]:
        run = RunConfig(model="daair", setting=setting).with_setting_options()
        assert run.model_options == {"degradation_types": kinds}
        assert run.params()["model.degradation_types"] == kinds
    given = RunConfig(model="daair", setting="five_deg", model_options={"degradation_types": 7}).with_setting_options()
    assert given.model_options == {"degradation_types": 7}  # a given option wins
    assert RunConfig(model="airnet", setting="five_deg").with_setting_options().model_options == {}


def test_daair_training_without_labels_or_with_too_few_experts_says_why():
    model = zoo.create_model("daair", "tiny", degradation_types=3)
    x = torch.rand(2, 3, 16, 16)
    stage = TrainingStage("main")
    with pytest.raises(ValueError, match="degradation_index"):
        model.training_loss(x, x, Conditioning(), F.l1_loss, stage)
    with pytest.raises(ValueError, match="3 experts .* label 4"):
        model.training_loss(x, x, Conditioning(degradation_index=torch.tensor([0, 4])), F.l1_loss, stage)


# ----------------------------------------------------------------------------------------------
# DaAIR: routing and controllers


def test_daair_routers_output_a_distribution_over_the_experts():
    torch.manual_seed(0)
    model = zoo.create_model("daair", "tiny", degradation_types=5).eval()
    with torch.no_grad():
        model(torch.rand(4, 3, 32, 32))
    routing = model.routing()
    assert len(routing) == len(model.learners()) == 8  # every block of the tiny network has a DaLe
    for distribution in routing.values():
        assert distribution.shape == (4, 5)
        assert (distribution >= 0).all()
        torch.testing.assert_close(distribution.sum(dim=1), torch.ones(4))


class Repeated(torch.utils.data.Dataset):
    """A small fixed set of labelled samples, visited in a scrambled order, endlessly."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return 10**6

    def __getitem__(self, index):
        return self.items[(index * 7919) % len(self.items)]


@pytest.mark.slow  # 25 s of training
def test_daair_routes_each_degradation_to_its_own_expert_after_short_training():
    """DaAIR Fig. 6: with the auxiliary loss the routers follow the degradation type."""
    torch.manual_seed(0)
    setting = get_setting("three_deg")
    kinds = len(setting.degradation_kinds)
    # 16 labelled 32x32 samples per degradation kind from the embedded suite.
    stream = open_data(setting).training_set(32, 400, seed=0)
    per_kind = {k: [] for k in range(kinds)}
    for i in range(len(stream)):
        item = stream[i]
        bucket = per_kind[int(item["degradation_index"])]
        if len(bucket) < 16:
            bucket.append(item)
    items = [item for k in range(kinds) for item in per_kind[k]]
    assert len(items) == 16 * kinds

    model = zoo.create_model("daair", "tiny", degradation_types=kinds)
    profile = dataclasses.replace(PROFILES.get("smoke"), steps=200, batch_size=12, patch_size=32, lr=2e-3, log_every=20)
    logged = []
    train(model, Repeated(items), profile, on_log=lambda step, metrics: logged.append(metrics))
    assert logged[-1]["train/loss_routing"] < 0.6 * logged[0]["train/loss_routing"]

    model.eval()
    labels = torch.stack([item["degradation_index"] for item in items])
    with torch.no_grad():
        model(torch.stack([item["degraded"] for item in items]))
    # share[l, k]: fraction of kind k's samples that layer l sends to expert k
    share = torch.stack([
        torch.stack([(routing.argmax(dim=1)[labels == k] == k).float().mean() for k in range(kinds)])
        for routing in model.routing().values()
    ])
    assert share.mean() > 0.7, share  # chance: 1/3
    # Most samples of every kind go to that kind's expert, in most of the network's layers.
    assert ((share > 0.5).float().mean(dim=0) >= 0.5).all(), share


def test_daair_controllers_change_only_by_their_moving_average():
    torch.manual_seed(0)
    model = zoo.create_model("daair", "tiny", degradation_types=3, ema=0.9)
    stage = model.training_stages()[0]
    trained = {id(p) for p in model.stage_parameters(stage)}
    blocks = [m for m in model.modules() if isinstance(m, DecoderBlock)]
    assert len(blocks) == 3
    controllers = [p for b in blocks for p in b.controller.parameters()]
    assert controllers and not any(p.requires_grad or id(p) in trained for p in controllers)
    # Each controller starts as a copy of its encoder agnostic expert (Sec. 3.2).
    for block in blocks:
        for mine, theirs in zip(block.controller.parameters(), block.source[0].parameters()):
            assert torch.equal(mine, theirs)

    optimizer = torch.optim.AdamW(model.stage_parameters(stage), lr=1e-2)
    x = torch.rand(4, 3, 32, 32)
    cond = Conditioning(degradation_index=torch.tensor([0, 1, 2, 0]))
    for _ in range(3):
        before = [p.detach().clone() for p in controllers]
        terms = model.training_loss(x, (x + 0.1).clamp(0, 1), cond, F.l1_loss, stage)
        optimizer.zero_grad()
        terms.total.backward()
        assert all(p.grad is None for p in controllers)  # no gradient ever reaches a controller
        optimizer.step()
        sources = [p.detach().clone() for b in blocks for p in b.source[0].parameters()]
        model.after_optimizer_step(stage)
        after = [p.detach() for p in controllers]
        for old, source, new in zip(before, sources, after):
            torch.testing.assert_close(new, 0.9 * old + 0.1 * source)
        assert any(not torch.equal(old, new) for old, new in zip(before, after))
    assert set(terms.parts) == {"pixel", "routing"}


# ----------------------------------------------------------------------------------------------
# AirNet: deformable convolution, stages, contrastive warm-up


@pytest.mark.parametrize("channels,size", [(5, (9, 13)), (8, (16, 16))])
def test_sampled_deformable_convolution_equals_torchvision(channels, size):
    torch.manual_seed(0)
    x = torch.randn(2, channels, *size, requires_grad=True)
    weight = torch.randn(6, channels, 3, 3, requires_grad=True)
    offset = (2.5 * torch.randn(2, 18, *size)).requires_grad_()  # samples fall outside the image too
    mask = torch.rand(2, 9, *size, requires_grad=True)
    ours = sampled_deform_conv2d(x, offset, mask, weight, padding=1)
    reference = deform_conv2d(x, offset, weight, padding=1, mask=mask)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    inputs = [x, offset, weight, mask]
    for a, b in zip(torch.autograd.grad(ours.square().sum(), inputs), torch.autograd.grad(reference.square().sum(), inputs)):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_airnet_runs_both_stages_and_its_contrastive_loss_falls_in_the_warm_up():
    torch.manual_seed(0)
    model = zoo.create_model("airnet", "tiny", encoder_fraction=0.9)
    assert [s.name for s in model.training_stages()] == ["encoder", "joint"]
    restorer_before = [p.detach().clone() for p in model.restorer.parameters()]
    key_before = [p.detach().clone() for p in model.key_encoder.parameters()]
    profile = dataclasses.replace(PROFILES.get("smoke"), steps=240, batch_size=8, patch_size=32, lr=2e-3, log_every=1)
    data = open_data(get_setting("three_deg")).training_set(32, 240 * 8, seed=0)
    logged = {}
    train(model, data, profile, on_log=lambda step, metrics: logged.setdefault(step, metrics))

    warm_up = [logged[s] for s in range(1, 217)]  # 90% of 240 steps
    joint = [logged[s] for s in range(217, 241)]
    assert all(set(m) == {"train/loss", "train/lr", "train/loss_contrastive"} for m in warm_up)
    assert all({"train/loss_pixel", "train/loss_contrastive"} <= set(m) for m in joint)
    # MoCo's queue starts as random unit vectors, easy negatives: the loss first rises while the
    # queue (256 keys, 8 a step) fills with real keys, then falls as the encoder learns.
    contrastive = [m["train/loss_contrastive"] for m in warm_up]
    early, late = sum(contrastive[32:62]) / 30, sum(contrastive[-30:]) / 30
    assert late < 0.9 * early, (early, late)
    # The restorer trains in the joint stage only; the key encoder follows the query encoder.
    assert any(not torch.equal(a, b) for a, b in zip(restorer_before, model.restorer.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(key_before, model.key_encoder.parameters()))
    assert not any(p.requires_grad for p in model.key_encoder.parameters())


def test_airnet_warm_up_leaves_the_restorer_alone():
    model = zoo.create_model("airnet", "tiny")
    warm_up = model.training_stages()[0]
    chosen = {id(p) for p in model.stage_parameters(warm_up)}
    assert chosen == {id(p) for p in model.encoder.parameters()}
    terms = model.training_loss(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), Conditioning(), F.l1_loss, warm_up)
    terms.total.backward()
    assert all(p.grad is None for p in model.restorer.parameters())


def test_airnet_hair_keeps_airnets_stages_and_trains_its_boxes_only_with_the_restorer():
    model = zoo.create_model("airnet_hair", "tiny")
    assert [s.name for s in model.training_stages()] == ["encoder", "joint"]
    warm_up, joint = model.training_stages()
    boxes = {id(p) for p in model.weight_boxes.parameters()}
    assert boxes and not boxes & {id(p) for p in model.stage_parameters(warm_up)}
    joint_params = {id(p) for p in model.stage_parameters(joint)}
    assert boxes <= joint_params
    assert joint_params == {id(p) for p in model.parameters() if p.requires_grad}
    # The hyper blocks' convolutions come from the Weight Boxes; the deformable kernels stay.
    box = model.weight_boxes["group2"]
    assert box.weights["conv1"].shape[0] == 3 and "guide1__dcn__offset_mask" in box.weights
    terms = model.training_loss(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32), Conditioning(), F.l1_loss, joint)
    assert set(terms.parts) == {"pixel", "contrastive"}
    terms.total.backward()
    assert box.weights["conv1"].grad is not None
