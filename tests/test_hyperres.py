"""HyperRes and the continuous-level settings: affine kernels, joint training, levels, blind mode."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

import zoo
from harness.runs.config import RunConfig
from harness.data import open_data
from harness.data.degradations import degrade
from harness.scoring.evaluation import evaluate
from harness.runs.profiles import PROFILES
from harness.settings import get_setting
from harness.runs.training import flatten_views, train
from zoo import Conditioning, TrainingStage


def test_generated_kernels_are_affine_in_the_level():
    torch.manual_seed(0)
    model = zoo.create_model("hyperres", "tiny")
    c1, c2 = 15 / 255, 75 / 255
    for block in model.blocks:
        for conv in (block.conv1, block.conv2):
            (w1, b1), (w2, b2), (wm, bm) = conv.kernel(c1), conv.kernel(c2), conv.kernel((c1 + c2) / 2)
            torch.testing.assert_close(w1 + w2, 2 * wm, atol=1e-6, rtol=0)
            torch.testing.assert_close(b1 + b2, 2 * bm, atol=1e-6, rtol=0)


def test_parameters_do_not_grow_with_the_number_of_levels():
    # The main network of the paper configuration has 2,588,483 parameters (authors' model).
    model = zoo.create_model("hyperres")
    main = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("estimator."))
    assert main == 2_588_483
    # Training at 4 levels or 1 builds nothing new: the same module serves every level.
    before = sum(p.numel() for p in model.parameters())
    x = torch.rand(4, 3, 16, 16)
    levels = torch.tensor([15, 35, 50, 75]) / 255
    model.training_loss(x, x, Conditioning(level=levels), F.l1_loss, TrainingStage("main"))
    assert sum(p.numel() for p in model.parameters()) == before


def test_training_loss_is_the_unweighted_sum_of_one_l1_per_level():
    torch.manual_seed(0)
    model = zoo.create_model("hyperres", "tiny")
    target = torch.rand(6, 3, 16, 16)
    degraded = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    levels = torch.tensor([15, 15, 35, 35, 75, 75]) / 255
    terms = model.training_loss(degraded, target, Conditioning(level=levels), F.l1_loss, TrainingStage("main"))
    expected = sum(F.l1_loss(model.main_network(degraded[i : i + 2], levels[i]), target[i : i + 2]) for i in (0, 2, 4))
    torch.testing.assert_close(terms.total, expected)
    assert {"l1_level_15", "l1_level_35", "l1_level_75"} <= set(terms.parts)
    # At inference one scalar generates one network, whatever the batch holds.
    with torch.no_grad():
        torch.testing.assert_close(model(degraded, Conditioning(level=levels))[2:4],
                                   model.main_network(degraded[2:4], levels[2]))


def test_continuous_settings_expand_their_levels():
    denoise = get_setting("hyperres_denoise")
    assert denoise.continuous and denoise.level_scale == 255
    assert [t.level for t in denoise.tasks] == list(range(5, 95, 5))
    assert [t.level for t in denoise.training_tasks] == [15, 35, 50, 75]
    assert denoise.trained_range() == (15, 75)
    assert [t.level for t in get_setting("hyperres_dejpeg").training_tasks] == [10, 25, 45, 65, 80]
    sr = get_setting("hyperres_sr")
    assert [t.level for t in sr.tasks] == [2, 3, 4, 5, 6] and sr.protocol.color == "y"
    assert not get_setting("three_deg").continuous


def test_each_training_patch_is_degraded_at_every_training_level():
    data = open_data(get_setting("hyperres_denoise"))
    sample = data.training_set(32, 4, seed=0)[0]
    assert sample["degraded"].shape == (4, 3, 32, 32)
    torch.testing.assert_close(sample["level"], torch.tensor([15, 35, 50, 75]) / 255)
    # The same clean patch behind every view, more noise at higher sigma.
    assert torch.equal(sample["target"][0], sample["target"][3])
    residual = (sample["degraded"] - sample["target"]).flatten(1).std(dim=1)
    assert torch.all(residual[1:] > residual[:-1])
    batch = flatten_views(torch.utils.data.default_collate([sample, data.training_set(32, 4, seed=0)[1]]))
    assert batch["degraded"].shape == (8, 3, 32, 32) and batch["level"].shape == (8,)


def test_dejpeg_is_greyscale_and_stronger_at_low_quality():
    data = open_data(get_setting("hyperres_dejpeg"))
    low, high = data.test_pairs("q_10")[0], data.test_pairs("q_80")[0]
    assert np.array_equal(low.target[..., 0], low.target[..., 2])
    assert np.array_equal(low.degraded[..., 0], low.degraded[..., 1])
    error = lambda pair: np.mean((pair.degraded - pair.target) ** 2)  # noqa: E731
    assert error(low) > 2 * error(high)


def test_bicubic_pre_upsampling_keeps_the_size_and_loses_more_at_larger_factors():
    clean = open_data(get_setting("hyperres_sr")).test_pairs("x_2")[0].target
    rng = np.random.default_rng(0)
    x2, x4 = degrade("bicubic_downup", clean, rng, scale=2), degrade("bicubic_downup", clean, rng, scale=4)
    assert x2.shape == clean.shape
    assert np.mean((x4 - clean) ** 2) > np.mean((x2 - clean) ** 2)


def test_a_dedicated_run_trains_at_its_level_only():
    run = RunConfig(model="hyperres", setting="hyperres_denoise", train_level=20)
    run.validate()
    setting = run.resolved_setting()
    assert [t.name for t in setting.training_tasks] == ["sigma_20"]
    assert setting.tasks == get_setting("hyperres_denoise").tasks  # still evaluated on the same suite
    with pytest.raises(ValueError, match="continuous setting"):
        RunConfig(model="nafnet", setting="three_deg", train_level=20).validate()


def test_short_training_learns_and_the_estimator_reads_levels():
    """A tiny HyperRes on the embedded default: it beats the noisy input and its estimator learns."""
    torch.manual_seed(0)
    setting = get_setting("hyperres_denoise")
    setting = dataclasses.replace(setting, tasks=tuple(t for t in setting.tasks if t.level in (15, 50, 75)))
    data = open_data(setting)
    profile = dataclasses.replace(PROFILES.get("smoke"), steps=120, batch_size=4, patch_size=32, lr=2e-3)
    model = zoo.create_model("hyperres", "tiny", estimator_fraction=0.3)
    logged = []
    train(model, data.training_set(profile.patch_size, profile.steps * profile.batch_size, 0), profile,
          on_log=lambda step, metrics: logged.append((step, metrics)))
    result = evaluate(model, setting, data).flat_metrics()
    noisy = {t: np.mean([10 * np.log10(1 / np.mean((p.degraded - p.target) ** 2)) for p in data.test_pairs(t)])
             for t in ("sigma_50", "sigma_75")}
    assert result["psnr/sigma_50"] > noisy["sigma_50"] + 2 and result["psnr/sigma_75"] > noisy["sigma_75"] + 2
    estimator_losses = [m["train/loss_level_l1"] for _, m in logged if "train/loss_level_l1" in m]
    assert estimator_losses[-1] < estimator_losses[0]
    assert "level_error/avg" in result and np.isfinite(result["level_error/avg"])
    # The estimator reads the level, not just its typical value: on the held-out test images its
    # estimates rank like the true levels (measured rho 0.94 on 21 images; a constant estimate,
    # e.g. always the middle level, has no rank correlation).
    true_levels, estimates = [], []
    with torch.no_grad():
        for spec in setting.tasks:
            for pair in data.test_pairs(spec.name):
                degraded = torch.from_numpy(pair.degraded).permute(2, 0, 1)[None].float()
                true_levels.append(spec.level)
                estimates.append(model.estimate_level(degraded).item())
    assert len(set(true_levels)) == 3 and len(true_levels) >= 15
    assert spearmanr(true_levels, estimates).statistic > 0.8
    by_level = [np.mean([e for t, e in zip(true_levels, estimates) if t == level]) for level in (15, 50, 75)]
    assert by_level[0] < by_level[1] < by_level[2]
    # Blind restoration uses the estimate: different numbers, same tasks.
    blind = evaluate(model, setting, data, blind=True).flat_metrics()
    assert set(blind) == set(result) and blind["psnr/sigma_50"] != result["psnr/sigma_50"]
