"""An example plug-in model for restoration-bench: a small residual CNN.

Use it without changing the package:
    harness list models --model-file examples/plugin_model.py
    harness submit --model-file examples/plugin_model.py --model tiny_rescnn --setting three_deg --profile smoke

The file registers its model with the zoo's decorator, exactly as the zoo's own models do: a
builder that takes a configuration dataclass, with a "paper" and a "tiny" configuration.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from zoo import Conditioning, RestorationModel, register_model


@dataclass(frozen=True)
class ResCNNConfig:
    """Width and depth of the residual CNN."""

    width: int = 32
    depth: int = 4


class ResCNN(RestorationModel):
    """Predicts the residual between the degraded input and the clean image (3x3 convolutions, ReLU)."""

    def __init__(self, config: ResCNNConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, config.width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [nn.Conv2d(config.width, config.width, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(config.width, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        """The restored image: the input plus the predicted residual (same size as the input)."""
        return degraded + self.body(degraded)


@register_model(
    configs={"paper": ResCNNConfig(width=64, depth=8), "tiny": ResCNNConfig(width=16, depth=3)},
    summary="example plug-in: a residual CNN of 3x3 convolutions",
    source="examples/plugin_model.py (restoration-bench README)",
)
def tiny_rescnn(config: ResCNNConfig) -> ResCNN:
    """Build the residual CNN."""
    return ResCNN(config)
