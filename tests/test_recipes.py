"""The papers' recipes as profiles: steps from epochs on real data, their schedules, their citations."""
from __future__ import annotations

import dataclasses
import math

import pytest

from conftest import harness_main
from harness.data.real import RealData  # imported at collection: skimage takes seconds
from harness.runs.budget import budget_of, epoch_size, plan_budget, published
from harness.runs.config import RunConfig
from harness.runs.profiles import PROFILES
from harness.runs.recipes import RECIPES
from harness.runs.training import StageSpan, learning_rate
from harness.settings import get_setting
from leaderboards.runs import budget_label
from zoo.contract import TrainingStage

MAIN = TrainingStage("main")


def real_layout_tree(root, pairs: int = 4):
    """three_deg's PromptIR layout with `pairs` training pairs per set; the files are only named (epochs count
    names), the test folders empty."""
    for i in range(1, pairs + 1):
        for name in (f"Train/Denoise/{i}.png", f"Train/Derain/gt/norain-{i}.png", f"Train/Derain/rainy/rain-{i}.png",
                     f"Train/Dehaze/original/{i:04d}.jpg", f"Train/Dehaze/synthetic/part1/{i:04d}_0.8_0.2.jpg"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).touch()
    for folder in ("test/denoise/bsd68", "test/derain/Rain100L/target", "test/derain/Rain100L/input",
                   "test/dehaze/target", "test/dehaze/input"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return root


def test_a_recipes_steps_are_epochs_times_the_real_trees_epoch_over_the_effective_batch(tmp_path):
    root = real_layout_tree(tmp_path / "data")
    run = RunConfig(model="nafnet", setting="three_deg", profile="promptir", data_root=str(root))
    data = RealData(get_setting("three_deg"), root)
    # 4 pairs per training set: dehaze x1, derain x120, three denoising levels x3 each (BSD400 and
    # WED are one folder, counted once): 4 + 480 + 36
    budget = plan_budget(run, data)
    assert budget.epoch_size == 4 + 4 * 120 + 3 * 4 * 3 == 520
    assert budget.steps == 120 * 520 / 32 == 1950 and budget.epochs == 120
    for workers, accumulate in ((2, 1), (4, 2), (8, 4)):  # the recipe's effective batch is kept
        split = plan_budget(dataclasses.replace(run, profile_options={"accumulate": accumulate}), data, workers)
        assert (split.steps, split.effective_batch, split.per_worker_batch) == (1950, 32, 32 // workers)
    with pytest.raises(ValueError, match="does not split into 3 worker"):
        plan_budget(run, data, workers=3)
    # an explicit --steps wins; the epochs it amounts to are recorded
    assert plan_budget(dataclasses.replace(run, steps=65), data).epochs == 65 * 32 / 520


def test_the_published_epoch_is_promptirs():
    # PromptIR's training set: 5,144 BSD400+WED images at each of 3 noise levels x3, Rain100L's 200 x120,
    # RESIDE-OTS's 72,135 once (harness/data/layouts.py counts, settings/three_deg.yaml repetitions)
    assert epoch_size(get_setting("three_deg"), published) == 5144 * 3 * 3 + 200 * 120 + 72135
    run = RunConfig(model="res_hair", setting="three_deg", variant="paper", profile="hair_paper")
    assert budget_of(run, 142431, 8).steps == math.ceil(160 * 142431 / 32)


def _old_warmup_cosine(profile, span, step):
    """The schedule every profile had before schedules became a registry (training.py, issue 20)."""
    length = max(span.end - span.start, 1)
    t = (step - span.start) / length
    warm = profile.warmup_fraction
    factor = (t + 1.0 / length) / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (1 - warm)))
    return profile.lr * span.stage.lr_scale * min(factor, 1.0)


@pytest.mark.parametrize("name", ["smoke", "default", "long"])
def test_the_existing_profiles_keep_their_learning_rates_bit_for_bit(name):
    profile = PROFILES.get(name)
    spans = [StageSpan(MAIN, 0, profile.steps), StageSpan(TrainingStage("late", lr_scale=0.3), 7, 7 + profile.steps)]
    for span in spans:
        for step in range(span.start, span.end):
            assert learning_rate(profile, span, step) == _old_warmup_cosine(profile, span, step)


def test_recipe_schedules_follow_their_sources():
    span = StageSpan(MAIN, 0, 1600)  # 10 steps per epoch
    hair = PROFILES.get("hair_paper")  # 2e-4 for 150 epochs, then 2e-5 for 10
    assert [learning_rate(hair, span, s) for s in (0, 1499)] == [2e-4, 2e-4]
    assert learning_rate(hair, span, 1500) == pytest.approx(2e-5) == learning_rate(hair, span, 1599)

    def pl_bolts(epoch, warmup, maximum, lr=2e-4):  # LinearWarmupCosineAnnealingLR after its warm-up, closed form
        return lr * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (maximum - warmup)))

    promptir, span = PROFILES.get("promptir"), StageSpan(MAIN, 0, 1200)
    for epoch in (15, 60, 119):  # stops at 120 of 150: the last rate is still about 2.3e-5
        assert learning_rate(promptir, span, epoch * 10) == pytest.approx(pl_bolts(epoch, 15, 150), rel=1e-9)
    code, span = PROFILES.get("hair_code"), StageSpan(MAIN, 0, 3000)
    assert learning_rate(code, span, 1500) == pytest.approx(0, abs=1e-12)  # the cosine's floor at epoch 150
    assert learning_rate(code, span, 2850) == pytest.approx(2e-4)  # and back up at 285, as the code's scheduler
    nafnet = PROFILES.get("nafnet_gopro")
    span = StageSpan(MAIN, 0, nafnet.steps)
    assert learning_rate(nafnet, span, 0) == 1e-3 and learning_rate(nafnet, span, nafnet.steps) == pytest.approx(1e-7)


def test_every_recipe_is_listed_with_its_citation(tmp_path):
    listed = harness_main(["list", "profiles"], tmp_path)
    assert listed.returncode == 0
    for recipe in RECIPES:
        line = next(row for row in listed.stdout.splitlines() if row.startswith(recipe.name + " "))
        assert recipe.citation and recipe.citation in line
    assert PROFILES.get("daair").citation.endswith("batch/crop/lr lost in the seed's text, PromptIR's used")


def test_the_leaderboard_budget_of_a_run_with_and_without_its_budget_tag():
    assert budget_label({"budget": "120 ep = 1,950 steps x 32"}, {}) == "120 ep = 1,950 steps x 32"
    assert budget_label({}, {"profile.steps": "600", "profile.batch_size": "8"}) == "600 steps x 8"  # older runs
    assert budget_label({}, {}) == "-"  # released weights and restored images were not trained here


def test_the_training_set_reads_each_denoising_image_once_though_two_names_share_its_folder(tmp_path):
    # three_deg names BSD400 and WED for every noise level; both are Train/Denoise (harness/data/layouts.py)
    root = real_layout_tree(tmp_path / "data")
    manifest = RealData(get_setting("three_deg"), root).training_manifest()
    denoise = [row for row in manifest if row["task"].startswith("denoise")]
    per_task = {task: sorted(r["target"] for r in denoise if r["task"] == task) for task in {r["task"] for r in denoise}}
    assert len(per_task) == 3 and all(files == [f"Train/Denoise/{i}.png" for i in range(1, 5)]
                                      for files in per_task.values())


def test_one_epoch_of_the_real_training_set_reads_every_pair_as_often_as_its_repetition_factor(tmp_path):
    from collections import Counter

    root = real_layout_tree(tmp_path / "data")
    data = RealData(get_setting("three_deg"), root)
    size = plan_budget(RunConfig(model="nafnet", setting="three_deg", profile="promptir", data_root=str(root)),
                       data).epoch_size
    training = data.training_set(8, 2 * size, seed=0)
    assert training.epoch_size == size == 520

    def read(indices):
        return Counter((training.sources[b][0], p.target.name) for b, p in map(training.entry, indices))

    first, second = read(range(size)), read(range(size, 2 * size))
    repeats = {i: t.train_repeat for i, t in enumerate(get_setting("three_deg").training_tasks)}
    assert first == second and all(n == repeats[task] for (task, _), n in first.items())
    assert len(first) == 3 * 4 + 4 + 4  # three noise levels x 4 images, 4 rain pairs, 4 haze pairs
    order = [training.entry(i)[1].target.name for i in range(size)]
    assert order != [training.entry(i)[1].target.name for i in range(size, 2 * size)]  # reshuffled per epoch
