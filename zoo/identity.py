"""The "no restoration" floor: returns its input unchanged."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from zoo.contract import Conditioning, RestorationModel
from zoo.factory import register_model


@dataclass(frozen=True)
class IdentityConfig:
    """Identity has nothing to configure."""


class Identity(RestorationModel):
    """Returns the degraded input: every method must beat this floor."""

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        return degraded


@register_model(
    configs={"paper": IdentityConfig(), "tiny": IdentityConfig()},
    summary="no restoration: the degraded input itself (the floor)",
    source="-",
)
def identity(config: IdentityConfig) -> Identity:
    """Build the identity floor."""
    return Identity()
