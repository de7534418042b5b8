"""Data-parallel training of one run on Ray Train workers: the one implementation sweep and submit share.

A Ray Tune trial (a sweep's trial, or the one trial of `harness submit --workers N`) drives a
TorchTrainer (gloo on CPUs, NCCL on GPUs) whose workers each take an equal slice of every
step's batch (harness/runs/training.py) and sync gradients through DistributedDataParallel
(harness/runs/parallel.py). Rank 0 logs to the run's MLflow run, checkpoints and evaluates;
the workers' reports reach Tune through TuneReportCallback. Ray Train keeps the checkpoints
under `storage/name` and a TorchTrainer of the same name resumes from the latest one, on any
number of workers, since every step's batch is the same whatever the number of slices.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.runs.config import RunConfig

DRIVER_CPU = 0.01  # CPU share of the Tune trial that drives a multi-worker TorchTrainer


@dataclass(frozen=True)
class WorkerGroup:
    """The Ray Train workers of one run: how many, and what each holds."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float = 0.0
    threads: int = 1  # torch threads per worker

    def backend(self) -> str:
        """NCCL between GPU workers, gloo between CPU workers."""
        return "nccl" if self.gpus_per_worker else "gloo"

    def resources(self) -> dict[str, float]:
        """Ray resources of each worker."""
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}


def split_cpus(total: float, workers: int, gpus_per_worker: float = 0.0) -> WorkerGroup:
    """`total` CPUs shared by `workers` workers after the driving trial's token share."""
    return WorkerGroup(workers, (total - DRIVER_CPU) / workers, gpus_per_worker, max(1, int(total / workers)))


def fit_data_parallel(run: RunConfig, uri: str, run_id: str, group: WorkerGroup, name: str, storage: str,
                      max_failures: int, validate_every_checkpoint: bool, stop_together: bool,
                      resume_from: Any = None) -> None:
    """Train and evaluate `run` on `group` inside the current Tune trial; returns when rank 0 has evaluated.

    `stop_together`: the workers check, together at every step, whether the driver marked the run
    KILLED, then checkpoint that step and stop (TrainingStopped). `resume_from`: a checkpoint to
    start from when Ray Train has none of its own under `storage/name` (a run that trained in one
    process before). Errors of the workers are raised as Ray Train's TrainingFailedError.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        data_parallel_worker,
        train_loop_config={"trial_run": dataclasses.asdict(run), "tracking_uri": uri, "run_id": run_id,
                           "threads": group.threads, "validate_every_checkpoint": validate_every_checkpoint,
                           "stop_together": stop_together},
        torch_config=TorchConfig(backend=group.backend()),
        scaling_config=ray.train.ScalingConfig(num_workers=group.workers, use_gpu=bool(group.gpus_per_worker),
                                               resources_per_worker=group.resources()),
        run_config=ray.train.RunConfig(
            name=name,  # the same name on a retry or a resume: Ray Train continues from its latest checkpoint
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            callbacks=[TuneReportCallback()],
        ),
        resume_from_checkpoint=resume_from,
    )
    trainer.fit()


def data_parallel_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its slice of every batch, gradients synced by DistributedDataParallel."""
    import ray.train

    from harness.runs.parallel import DataParallel, mean_over_group
    from harness.runs.trial import RayApi, train_evaluate

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # TorchTrainer has initialised the gloo/NCCL process group; DDP buckets and overlaps the sync.
    api = RayApi(ray.train.report, ray.train.get_checkpoint, ray.train.Checkpoint.from_directory, rank, world,
                 DataParallel(), mean_over_group, stop_together=config.get("stop_together", False))
    train_evaluate(RunConfig(**config["trial_run"]), config["tracking_uri"], config["run_id"], config["threads"], api,
                   validate_every_checkpoint=config["validate_every_checkpoint"])


def submitted_trial(config: dict[str, Any], run: RunConfig, run_id: str) -> None:
    """The Tune trial of `harness submit --workers N`: drives the run's workers as its MLflow tags say now.

    The `workers` and `gpus_per_worker` tags are set at submission and changed by
    `harness submit --resume RUN_ID --workers M`, so a resumed run continues on M workers.
    """
    from ray import tune

    from harness.runs import tracking

    tags = tracking.client(config["tracking_uri"]).get_run(run_id).data.tags
    group = split_cpus(config["cpus"], int(tags.get("workers", "1")), float(tags.get("gpus_per_worker", "0")))
    fit_data_parallel(run, config["tracking_uri"], run_id, group, "train", config["train_storage"],
                      config["max_failures"], validate_every_checkpoint=False, stop_together=True,
                      resume_from=tune.get_checkpoint())
