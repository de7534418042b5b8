"""The model contract: what the harness may ask of every restoration network.

A model is an ``nn.Module`` that maps degraded images in [0, 1] (B x 3 x H x W) to restored
ones. Methods with special training needs express them by overriding hooks, never by code in
the training loop:

* ``training_loss`` may add auxiliary terms (e.g. DaAIR's routing loss, which needs each
  sample's degradation label from ``Conditioning.degradation_index``) or train several generated
  networks jointly (HyperRes' k main networks); every term is logged by name.
* ``Conditioning.level`` carries a continuous degradation level (HyperRes).
* ``training_stages`` splits the budget into named stages (AirNet's encoder warm-up, ADS'
  pipeline steps), each with its own trainable parameters and learning-rate scale.
* ``after_optimizer_step`` runs after each update (momentum encoders, EMA controllers).

Data-parallel training needs nothing more from a model: the harness wraps ``training_loss`` in a
thin module and hands that to DistributedDataParallel, so the forward pass ``training_loss``
runs goes through the wrapper. A model whose forward may leave some of a stage's parameters
unused in a step (DaAIR's top-k routing) sets ``parameters_may_go_unused``; parameters outside
the current stage need no flag, since the harness freezes them for the stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn


@dataclass
class Conditioning:
    """What a model may know about each sample besides its pixels."""

    task_index: Tensor | None = None  # B, long: index of the degradation in the setting's tasks
    level: Tensor | None = None  # B, float: continuous degradation level (normalised)
    # B, long: index of the sample's degradation kind in the setting's distinct kinds
    # (Setting.degradation_kinds): three_deg's three noise levels share one kind (DaAIR's experts)
    degradation_index: Tensor | None = None

    def to(self, device: torch.device | str) -> "Conditioning":
        """Move every tensor field to `device`."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Conditioning(task_index=move(self.task_index), level=move(self.level),
                            degradation_index=move(self.degradation_index))


@dataclass
class LossTerms:
    """The loss to minimise and its named parts (each part is logged separately)."""

    total: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingStage:
    """A named share of the training budget with its own learning-rate scale."""

    name: str
    fraction: float = 1.0
    lr_scale: float = 1.0


PixelLoss = Callable[[Tensor, Tensor], Tensor]


class RestorationModel(nn.Module):
    """Base class of every zoo model; subclasses implement ``forward``."""

    #: inputs are padded to a multiple of this before ``forward`` and cropped back after
    pad_multiple: int = 1
    #: True when a training step may leave some of the stage's parameters without a gradient
    #: (data-parallel training then asks DDP to search for them each step, which costs time)
    parameters_may_go_unused: bool = False

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:  # noqa: D401
        """Restore a batch of degraded images."""
        raise NotImplementedError

    def training_stages(self) -> list[TrainingStage]:
        """The stages training runs through, in order; one stage by default."""
        return [TrainingStage("main")]

    def stage_parameters(self, stage: TrainingStage) -> Iterable[nn.Parameter]:
        """Parameters the optimiser updates during `stage`."""
        return [p for p in self.parameters() if p.requires_grad]

    def training_loss(
        self,
        degraded: Tensor,
        target: Tensor,
        cond: Conditioning,
        pixel_loss: PixelLoss,
        stage: TrainingStage,
    ) -> LossTerms:
        """Loss for one batch; override to add auxiliary terms or several networks."""
        pixel = pixel_loss(self(degraded, cond), target)
        return LossTerms(total=pixel, parts={"pixel": pixel})

    def estimate_level(self, degraded: Tensor) -> Tensor | None:
        """Blind models: each image's estimated degradation level (normalised); None if unsupported."""
        return None

    def after_optimizer_step(self, stage: TrainingStage) -> None:
        """Hook run after every optimiser step (EMA, momentum encoders); no-op by default."""
