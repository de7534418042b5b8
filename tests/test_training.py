"""The training loop: it learns, resumes exactly, stops on a non-finite loss, splits stages."""
import dataclasses
import re

import pytest
import torch

from harness.runs.checkpoints import load_checkpoint, save_checkpoint
from harness.data import open_data
from harness.runs.profiles import PROFILES
from harness.settings import get_setting
from harness.runs.training import (NonFiniteLossError, TrainingOutOfMemoryError, flatten_views, learning_rate,
                                   plan_stages, train)
from zoo import Conditioning, RestorationModel, TrainingStage, create_model

PROFILE = dataclasses.replace(PROFILES.get("smoke"), steps=12, checkpoint_every=6, log_every=3)


def dataset(steps=PROFILE.steps):
    return open_data(get_setting("three_deg")).training_set(PROFILE.patch_size, steps * PROFILE.batch_size, seed=0)


def fresh_model():
    torch.manual_seed(0)
    return create_model("nafnet", "tiny")


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    straight = fresh_model()
    train(straight, dataset(), PROFILE)

    interrupted = fresh_model()
    saved = {}

    def keep_first(step, optimizer_state):
        if step == 6 and not saved:
            save_checkpoint(tmp_path, interrupted, optimizer_state, {"step": step})
            saved["done"] = True

    train(interrupted, dataset(), dataclasses.replace(PROFILE, steps=12), on_checkpoint=keep_first)
    resumed = fresh_model()
    state, optimizer_state = load_checkpoint(tmp_path, resumed)
    assert state["step"] == 6
    train(resumed, dataset(), PROFILE, start_step=6, optimizer_state=optimizer_state)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_logged_metrics_name_every_loss_term():
    logged = []
    train(fresh_model(), dataset(), PROFILE, on_log=lambda step, m: logged.append((step, m)))
    assert [s for s, _ in logged] == [3, 6, 9, 12]
    assert {"train/loss", "train/lr", "train/loss_pixel"} <= set(logged[0][1])


class CorruptAt(torch.utils.data.Dataset):
    """A dataset whose sample `bad` decodes to NaN, as a broken file would."""

    def __init__(self, inner, bad):
        self.inner, self.bad = inner, bad

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        item = dict(self.inner[i])
        if i == self.bad:
            item["degraded"] = torch.full_like(item["degraded"], float("nan"))
        return item


def test_nan_loss_stops_the_run_and_names_the_step_and_every_loss_term():
    # DaAIR's loss has an auxiliary term beside the pixel loss (the routers' classification), so a
    # message that names only the total or only the first term is caught.
    torch.manual_seed(0)
    model = create_model("daair", "tiny", degradation_types=3)
    data = dataset()
    item = flatten_views(torch.utils.data.default_collate([data[0], data[1]]))
    cond = Conditioning(degradation_index=item["degradation_index"])
    terms = model.training_loss(item["degraded"], item["target"], cond, torch.nn.functional.l1_loss, TrainingStage("main"))
    assert set(terms.parts) == {"pixel", "routing"}
    bad_step = 5
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # DaAIR's small convolutions: 0.7 s on one thread, up to 50 s on two when the other core is busy
    try:
        with pytest.raises(NonFiniteLossError) as stopped:
            train(model, CorruptAt(data, bad_step * PROFILE.batch_size + 1), PROFILE)
    finally:
        torch.set_num_threads(threads)
    message = str(stopped.value)
    assert f"at step {bad_step} " in message and "stage 'main'" in message
    for name in terms.parts:  # every term, with its (non-finite) value
        assert re.search(rf"\b{name} nan\b", message), (name, message)


def test_stages_split_the_budget_and_scale_the_learning_rate():
    spans = plan_stages([TrainingStage("warmup", 0.25, lr_scale=10.0), TrainingStage("joint", 0.75)], 100)
    assert [(s.stage.name, s.start, s.end) for s in spans] == [("warmup", 0, 25), ("joint", 25, 100)]
    profile = PROFILES.get("default")
    peak = max(learning_rate(profile, spans[0], s) for s in range(0, 25))
    assert peak == pytest.approx(profile.lr * 10.0, rel=1e-6)
    assert learning_rate(profile, spans[1], 99) < 1e-3 * profile.lr


def test_a_short_run_reduces_the_training_loss():
    model = fresh_model()
    profile = dataclasses.replace(PROFILE, steps=60, log_every=10)
    logged = []
    train(model, dataset(60), profile, on_log=lambda step, m: logged.append(m["train/loss"]))
    assert sum(logged[-2:]) / 2 < sum(logged[:2]) / 2


class Upsampler(RestorationModel):
    """A real network whose activations grow with the patch area times `factor`^2."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, degraded, cond=None):
        wide = torch.nn.functional.interpolate(self.conv(degraded), scale_factor=self.factor)
        return torch.nn.functional.avg_pool2d(wide, self.factor)


def test_running_out_of_memory_names_the_batch_and_patch_size_to_lower():
    # the upsampled activations would need a few TB: the CPU allocator refuses them at once
    with pytest.raises(TrainingOutOfMemoryError, match=rf"micro-batches of {PROFILE.batch_size} {PROFILE.patch_size}x"
                                                       rf"{PROFILE.patch_size} patches on cpu \(batch {PROFILE.batch_size}, "
                                                       r"accumulate 1\): raise --accumulate"):
        train(Upsampler(factor=2048), dataset(), PROFILE)
    train(Upsampler(factor=2), dataset(), dataclasses.replace(PROFILE, steps=2))  # the same net fits when smaller
