"""HAIR: hypernetwork-based all-in-one restoration as a plug-in for any host network.

HAIR (../shared/seeds/000, Sec. 3.1-3.2) adds two things to a host:

* a Degradation-Aware Classifier (DAC) at the junction between the host's two halves, which
  turns the features there into a Global Information Vector (GIV, Sec. 3.1.1, Eq. 1-2);
* for every block of the second half, a Hyper Selecting Net (HSN): a small fully connected net
  and a softmax that turn the GIV into a selecting vector v of length N (Eq. 3), and the
  block's convolution parameters become w = sum_i v_i W_i over a Weight Box of N candidate
  parameter sets (Eq. 4). The blocks of one level share one Weight Box (Sec. 9.2).

``attach_hair`` does this to a host module in place, without knowing its class: a ``HairPlan``
names the module whose input the DAC reads and, per level, the blocks to make "hyper". Each
``nn.Conv2d`` inside those blocks is swapped for a ``SelectedConv2d`` that reads its kernel
candidates from the level's Weight Box; everything else in the block (LayerNorms, attention
temperatures, the block's own forward) stays the host's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage

APPLICATIONS = ("grouped", "distributive")


@dataclass(frozen=True)
class HyperLevel:
    """Blocks (dotted module paths in the host) that share one Weight Box of `candidates` sets."""

    name: str
    blocks: tuple[str, ...]
    candidates: int


@dataclass(frozen=True)
class HairPlan:
    """Where HAIR goes into a host: the DAC's tap, the hyper levels and the GIV size."""

    tap: str  # module whose input is the DAC's input F_g (the junction of the two halves)
    tap_channels: int
    giv_channels: int  # 2C in Res-HAIR (Sec. 3.1.1)
    levels: tuple[HyperLevel, ...]
    # "grouped": mix kernels per sample, one grouped convolution over the batch;
    # "distributive": convolve with all N candidates, mix the outputs (Eq. 7).
    application: str = "grouped"


# ----------------------------------------------------------------------------------------------
# Per-sample convolution with kernels mixed from a Weight Box


def mixed_conv2d(
    x: Tensor,
    selection: Tensor,
    candidates: Tensor,
    bias_candidates: Tensor | None,
    geometry: "ConvGeometry",
    application: str,
) -> Tensor:
    """conv(x_b, sum_i v_bi W_i) for every sample b: the HyperTrans convolution (HAIR Eq. 4-5).

    `selection` is B x N, `candidates` N x out x in/groups x kh x kw, `bias_candidates` N x out.
    """
    batch, channels, height, width = x.shape
    n, out = candidates.shape[:2]
    groups, geometry = geometry.groups, dict(stride=geometry.stride, padding=geometry.padding, dilation=geometry.dilation)
    bias = None if bias_candidates is None else selection @ bias_candidates  # B x out
    if application == "grouped":
        # One kernel per sample; the batch becomes groups of a single convolution.
        kernels = (selection @ candidates.flatten(1)).view(batch * out, *candidates.shape[2:])
        y = F.conv2d(x.reshape(1, batch * channels, height, width), kernels,
                     None if bias is None else bias.reshape(-1), groups=batch * groups, **geometry)
        return y.view(batch, out, *y.shape[-2:])
    if application == "distributive":
        # Eq. 7: x * (sum_i v_i W_i) = sum_i v_i (x * W_i); all N candidates in one convolution,
        # ordered group-major so that each group's N x out/groups kernels stay together.
        g = groups
        stacked = candidates.view(n, g, out // g, *candidates.shape[2:]).transpose(0, 1)
        y = F.conv2d(x, stacked.reshape(g * n * (out // g), *candidates.shape[2:]), groups=g, **geometry)
        y = y.view(batch, g, n, out // g, *y.shape[-2:])
        y = torch.einsum("bgnohw,bn->bgohw", y, selection).reshape(batch, out, *y.shape[-2:])
        return y if bias is None else y + bias[:, :, None, None]
    raise ValueError(f"unknown HAIR weight application '{application}'; valid: {', '.join(APPLICATIONS)}")


@dataclass(frozen=True)
class ConvGeometry:
    """Everything of an ``nn.Conv2d`` but its parameters."""

    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def of(cls, conv: nn.Conv2d) -> "ConvGeometry":
        """The geometry of `conv`."""
        return cls(conv.stride, conv.padding, conv.dilation, conv.groups)


class WeightBox(nn.Module):
    """N candidate parameter sets for every convolution of one block type (HAIR Sec. 3.1.2)."""

    def __init__(self, template: nn.Module, candidates: int):
        super().__init__()
        self.candidates = candidates
        self.weights, self.biases = nn.ParameterDict(), nn.ParameterDict()
        for name, conv in convolutions(template):
            key = box_key(name)
            weights, biases = [], []
            for _ in range(candidates):
                conv.reset_parameters()  # each candidate initialised like an ordinary convolution
                weights.append(conv.weight.detach().clone())
                if conv.bias is not None:
                    biases.append(conv.bias.detach().clone())
            self.weights[key] = nn.Parameter(torch.stack(weights))
            if biases:
                self.biases[key] = nn.Parameter(torch.stack(biases))


class SelectionSlot:
    """Per-block state shared by the block's convolutions: its Weight Box and current selection."""

    def __init__(self, box: WeightBox, application: str):
        self.box, self.application = box, application
        self.selection: Tensor | None = None


class SelectedConv2d(nn.Module):
    """Stands in for an ``nn.Conv2d`` of a hyper block: its kernel comes from the Weight Box."""

    def __init__(self, conv: nn.Conv2d, key: str, slot: SelectionSlot):
        super().__init__()
        # Keep the geometry only; the parameters live in the level's Weight Box.
        self.geometry, self.key, self.slot = ConvGeometry.of(conv), key, slot

    def forward(self, x: Tensor) -> Tensor:
        slot = self.slot
        if slot.selection is None:
            raise RuntimeError(f"hyper convolution '{self.key}' ran before its selecting net")
        biases = slot.box.biases[self.key] if self.key in slot.box.biases else None
        return mixed_conv2d(x, slot.selection, slot.box.weights[self.key], biases, self.geometry, slot.application)


def convolutions(module: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` inside `module`, with its dotted path."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def box_key(path: str) -> str:
    """A ParameterDict key for a convolution path (dots are not allowed there)."""
    return path.replace(".", "__")


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Put `new` at dotted `path` inside `root`."""
    parent_path, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, child, new)


# ----------------------------------------------------------------------------------------------
# DAC, HSN and the wrappers that put them into the host


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 24 groups (the authors' DAC uses 24); per-sample, unlike BatchNorm."""
    return nn.GroupNorm(math.gcd(channels, 24), channels)


class ResidualBlock(nn.Module):
    """Pre-activation ResNet block: (GroupNorm, SiLU, 3x3 conv) twice, 1x1 skip if widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(group_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
                                  group_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class DegradationAwareClassifier(nn.Module):
    """Three rounds of ResNet block + 2x down-sampling, then global average pooling (Eq. 1-2).

    The first block projects the input's width (8C in Res-HAIR) to the GIV's (2C), so that
    H/8 x 8C becomes H/64 x 2C (Sec. 3.1.1). The projection comes first to keep the DAC near
    the 3M parameters that HAIR adds to Restormer (Tab. 1: Restormer 26M, Res-HAIR 29M).
    No softmax on the GIV (Sec. 3.1.1: it would confine the values to [0, 1]).
    """

    def __init__(self, in_channels: int, giv_channels: int):
        super().__init__()
        widths = [in_channels, giv_channels, giv_channels, giv_channels]
        rounds = []
        for cin, cout in zip(widths, widths[1:]):
            rounds += [ResidualBlock(cin, cout), nn.Conv2d(cout, cout, 3, stride=2, padding=1)]
        self.backbone = nn.Sequential(*rounds)

    def forward(self, features: Tensor) -> Tensor:
        return self.backbone(features).mean(dim=(2, 3))


class HyperSelectingNet(nn.Module):
    """GIV -> selecting vector: an MLP halving the width three times, GELU, softmax (Eq. 3).

    Widths 96 -> 48 -> 24 -> 12 -> N for Res-HAIR (authors' HAIR.py, per ARCHITECTURES.md).
    """

    def __init__(self, giv_channels: int, candidates: int):
        super().__init__()
        # At least 8 units per layer so that tiny variants keep a usable bottleneck.
        widths = [giv_channels] + [max(giv_channels // 2**k, 8) for k in (1, 2, 3)]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Linear(cin, cout), nn.GELU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], candidates))

    def forward(self, giv: Tensor) -> Tensor:
        return self.mlp(giv).softmax(dim=-1)


class GivSlot:
    """Holds the GIV of the batch being restored, from the DAC to every HSN."""

    def __init__(self):
        self.giv: Tensor | None = None


class DacTap(nn.Module):
    """Runs the DAC on the (first) input of the wrapped host module, then the module itself."""

    def __init__(self, module: nn.Module, dac: DegradationAwareClassifier, giv: GivSlot):
        super().__init__()
        self.module, self.dac, self.giv = module, dac, giv

    def forward(self, x: Tensor, *args: Tensor) -> Tensor:
        # Host modules may take more inputs than the features (AirNet's blocks: a condition map).
        self.giv.giv = self.dac(x)
        return self.module(x, *args)


class HyperBlock(nn.Module):
    """A host block whose convolutions take their kernels from a Weight Box via its own HSN."""

    def __init__(self, block: nn.Module, selector: HyperSelectingNet, slot: SelectionSlot, giv: GivSlot):
        super().__init__()
        self.block, self.selector, self.slot, self.giv = block, selector, slot, giv
        self.last_selection: Tensor | None = None  # detached, for inspection and analysis

    def forward(self, x: Tensor, *args: Tensor) -> Tensor:
        if self.giv.giv is None:
            raise RuntimeError("a HyperTrans block ran before the degradation-aware classifier")
        self.slot.selection = self.selector(self.giv.giv)
        self.last_selection = self.slot.selection.detach()
        try:
            return self.block(x, *args)
        finally:
            self.slot.selection = None


class Hair(RestorationModel):
    """A host network with HAIR attached: DAC at the plan's tap, hyper blocks after it."""

    def __init__(self, host: RestorationModel, plan: HairPlan):
        super().__init__()
        if plan.application not in APPLICATIONS:
            raise ValueError(f"unknown HAIR weight application '{plan.application}'; valid: {', '.join(APPLICATIONS)}")
        self.pad_multiple = host.pad_multiple
        self.plan = plan
        self._giv = GivSlot()
        self.weight_boxes = nn.ModuleDict()
        self.hyper_blocks: dict[str, HyperBlock] = {}
        for level in plan.levels:
            template = host.get_submodule(level.blocks[0])
            expected = [(n, c.weight.shape) for n, c in convolutions(template)]
            box = WeightBox(template, level.candidates)
            self.weight_boxes[level.name] = box
            for path in level.blocks:
                block = host.get_submodule(path)
                if [(n, c.weight.shape) for n, c in convolutions(block)] != expected:
                    raise ValueError(f"HAIR level '{level.name}': block '{path}' differs from '{level.blocks[0]}'")
                slot = SelectionSlot(box, plan.application)
                for name, _ in convolutions(block):
                    replace_module(block, name, SelectedConv2d(block.get_submodule(name), box_key(name), slot))
                hyper = HyperBlock(block, HyperSelectingNet(plan.giv_channels, level.candidates), slot, self._giv)
                replace_module(host, path, hyper)
                self.hyper_blocks[path] = hyper
        dac = DegradationAwareClassifier(plan.tap_channels, plan.giv_channels)
        replace_module(host, plan.tap, DacTap(host.get_submodule(plan.tap), dac, self._giv))
        self.host = host
        self.last_giv: Tensor | None = None

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        self._giv.giv = None
        try:
            return self.host(degraded, cond)
        finally:
            self.last_giv = None if self._giv.giv is None else self._giv.giv.detach()
            self._giv.giv = None

    # The host's training needs stay the host's: HAIR changes its parameters, not its recipe
    # (e.g. AirNet's contrastive warm-up and momentum encoder keep working under HAIR).

    def training_stages(self) -> list[TrainingStage]:
        """The host's stages."""
        return self.host.training_stages()

    def stage_parameters(self, stage: TrainingStage) -> list[nn.Parameter]:
        """The host's parameters for `stage`, plus the Weight Boxes whenever the hyper blocks train.

        The boxes stand in for the hyper blocks' convolutions, so they train in exactly the
        stages that train those blocks (recognised by their selecting nets' parameters).
        """
        chosen = {id(p) for p in self.host.stage_parameters(stage)}
        hyper = {id(p) for block in self.hyper_blocks.values() for p in block.selector.parameters()}
        if chosen & hyper:
            chosen |= {id(p) for p in self.weight_boxes.parameters()}
        return [p for p in self.parameters() if id(p) in chosen and p.requires_grad]

    def training_loss(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                      stage: TrainingStage) -> LossTerms:
        """The host's loss; its forward passes run through the DAC and the hyper blocks."""
        return self.host.training_loss(degraded, target, cond, pixel_loss, stage)

    def after_optimizer_step(self, stage: TrainingStage) -> None:
        """The host's hook (momentum encoders, EMA)."""
        self.host.after_optimizer_step(stage)

    def selections(self) -> dict[str, Tensor]:
        """The selecting vector (B x N) of every hyper block from the last forward pass."""
        return {path: block.last_selection for path, block in self.hyper_blocks.items()}
