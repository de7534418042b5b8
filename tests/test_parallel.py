"""Data-parallel training through DistributedDataParallel: 2 gloo processes on loopback, no Ray.

Each test spawns two processes that run the real training loop (`train(shard=..., data_parallel=...)`)
on their halves of every batch and compares them with one process on the whole batch.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from harness.data import open_data
from harness.runs.parallel import DataParallel
from harness.runs.profiles import PROFILES
from harness.runs.training import train
from harness.settings import get_setting
from zoo import Conditioning, create_model

PROFILE = dataclasses.replace(PROFILES.get("smoke"), steps=3, patch_size=32, checkpoint_every=100)
# Two DDP workers against one process after 3 AdamW steps of the tiny NAFNet: 1.2e-7 measured
# (float32 sums in a different order); the old per-tensor all-reduce was tested at 1e-5 dB PSNR.
PARAMETER_TOLERANCE = 1e-6
# DaAIR after 2 steps: 1.0e-5 measured, in ordinary convolutions, not the experts. AdamW's first
# steps move each weight by about lr * sign(gradient), so a gradient that is zero up to rounding
# (a saturated gate) moves either way depending on the order of the float32 sums.
ROUTING_TOLERANCE = 5e-5


def training_set(profile=PROFILE, setting="three_deg"):
    """The embedded training crops of `setting` for `profile`'s steps."""
    return open_data(get_setting(setting)).training_set(profile.patch_size, profile.steps * profile.batch_size, 0)


def model_state(name: str, profile, rank: int = 0, world: int = 1, data_parallel=None, setting="three_deg"):
    """Train the tiny `name` from seed 0 on this process's shard; return its parameters."""
    torch.manual_seed(0)
    model = create_model(name, "tiny", **({"degradation_types": 3} if name == "daair" else {}))
    train(model, training_set(profile, setting), profile, shard=(rank, world), data_parallel=data_parallel)
    # parameters only: buffers (AirNet's MoCo queue and its pointer) stay per process by design
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _worker(rank: int, world: int, store: str, job, out: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.save(job(rank, world), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def run_two_workers(job, tmp_path: Path, every_rank: bool = False):
    """Run `job(rank, world)` in 2 gloo processes; return what rank 0 returned (or both ranks' results)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "result.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), job, str(out)), nprocs=2, join=True)
    results = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    return results if every_rank else results[0]


def _nafnet_job(rank, world):
    return model_state("nafnet", PROFILE, rank, world, DataParallel())


@pytest.mark.slow  # spawns two processes
def test_two_ddp_workers_take_the_step_one_process_takes(tmp_path):
    one = model_state("nafnet", PROFILE)
    two = run_two_workers(_nafnet_job, tmp_path)
    difference = max((one[k] - two[k]).abs().max().item() for k in one)
    start = create_model("nafnet", "tiny")
    print(f"max parameter difference, 2 DDP workers vs 1 process: {difference:.2e}")
    assert difference <= PARAMETER_TOLERANCE
    assert any((one[k] - v).abs().max() > 1e-3 for k, v in start.state_dict().items())  # it did train


def _daair_job(rank, world):
    profile = dataclasses.replace(PROFILE, steps=2)
    return model_state("daair", profile, rank, world, DataParallel())


@pytest.mark.slow  # spawns two processes
def test_routing_model_with_unused_experts_trains_on_two_workers(tmp_path):
    """DaAIR's top-k routing leaves experts without gradients; DDP is told so and does not fail."""
    two = run_two_workers(_daair_job, tmp_path)
    one = model_state("daair", dataclasses.replace(PROFILE, steps=2))
    assert max((one[k] - two[k]).abs().max().item() for k in one) <= ROUTING_TOLERANCE


def _airnet_job(rank, world):
    # 4 steps: AirNet's encoder warm-up stage, then the joint stage (a part of the model per stage)
    profile = dataclasses.replace(PROFILE, steps=4, batch_size=4)
    return model_state("airnet", profile, rank, world, DataParallel())


@pytest.mark.slow  # spawns two processes
def test_staged_model_trains_on_two_workers(tmp_path):
    """AirNet's warm-up trains the encoder only; the frozen restorer is left out of DDP's buckets.

    Both stages run and the two replicas stay identical. They do not equal one process: each
    worker's MoCo queue holds only its own keys (as in the authors' single-GPU code), so the
    contrastive loss sees other negatives.
    """
    rank0, rank1 = run_two_workers(_airnet_job, tmp_path, every_rank=True)
    torch.manual_seed(0)
    start = dict(create_model("airnet", "tiny").named_parameters())
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    moved = {k for k in rank0 if not torch.equal(rank0[k], start[k])}
    assert any(k.startswith("encoder.") for k in moved) and any(not k.startswith("encoder.") for k in moved)


def _counting_job(accumulate):
    def job(rank, world):
        calls = []

        def count_then_allreduce(state, bucket):
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            calls.append(bucket.index())
            return allreduce_hook(state, bucket)

        profile = dataclasses.replace(PROFILE, steps=3, batch_size=8, accumulate=accumulate)
        state = model_state("nafnet", profile, rank, world, DataParallel(comm_hook=count_then_allreduce))
        return {"calls": torch.tensor(calls), **state}

    return job


def _accumulate_1(rank, world):
    return _counting_job(1)(rank, world)


def _accumulate_2(rank, world):
    return _counting_job(2)(rank, world)


@pytest.mark.slow  # spawns two processes
def test_accumulated_micro_batches_sync_once_per_optimiser_step(tmp_path):
    plain = run_two_workers(_accumulate_1, tmp_path / "a1")
    accumulated = run_two_workers(_accumulate_2, tmp_path / "a2")
    buckets_per_step = len(plain["calls"]) // PROFILE.steps
    assert buckets_per_step >= 1 and len(plain["calls"]) == PROFILE.steps * buckets_per_step
    # the same number of all-reduce calls with 2 micro-batches per step: none for the first one
    assert accumulated["calls"].tolist() == plain["calls"].tolist()
    difference = max((plain[k] - accumulated[k]).abs().max().item() for k in plain if k != "calls")
    assert difference <= PARAMETER_TOLERANCE  # and the same step


def test_accumulation_in_one_process_takes_the_whole_batch_step():
    profile = dataclasses.replace(PROFILE, batch_size=8)
    whole = model_state("nafnet", profile)
    split = model_state("nafnet", dataclasses.replace(profile, accumulate=4))
    assert max((whole[k] - split[k]).abs().max().item() for k in whole) <= PARAMETER_TOLERANCE


def test_a_batch_that_does_not_split_into_micro_batches_is_refused():
    with pytest.raises(ValueError, match=r"batch of 4 cannot be split into 2 worker slice\(s\) of 3 micro-batch"):
        train(create_model("nafnet", "tiny"), training_set(), dataclasses.replace(PROFILE, accumulate=3), shard=(0, 2))


@pytest.mark.parametrize("name", ["airnet", "daair", "hyperres", "nafnet", "nafnet_ads", "promptir", "res_hair"])
def test_models_that_skip_parameters_in_a_step_declare_it(name):
    """A stage parameter without a gradient after a step would break DDP unless the model says so."""
    from harness.runs.parallel import only_trainable

    torch.manual_seed(0)
    model = create_model(name, "tiny", **({"degradation_types": 3} if name == "daair" else {})).train()
    degraded, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    cond = Conditioning(task_index=torch.tensor([0, 1]), level=torch.tensor([0.1, 0.2]),
                        degradation_index=torch.tensor([0, 1]))
    skipped = []
    for stage in model.training_stages():
        params = list(model.stage_parameters(stage))
        model.zero_grad(set_to_none=True)
        with only_trainable(model, params):
            model.training_loss(degraded, target, cond, F.l1_loss, stage).total.backward()
        skipped += [p for p in params if p.grad is None]
    assert bool(skipped) <= model.parameters_may_go_unused, f"{name}: {len(skipped)} parameters got no gradient"
