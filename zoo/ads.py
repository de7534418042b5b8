"""ADS: adaptive discriminative filters for specific degradations (Park, Lee, Chun, CVPR 2023).

The slides (../shared/seeds/002_752515b95b7cbb61.txt) build an all-in-one network in four steps:
a unified model theta_um; per degradation d a fine-tuned target model theta_d and its FAIG-SD
scores per filter; the top q% filters per degradation as masks M_d; a degradation classifier
(DC) giving c_d; and CNN-ADS, theta = theta_um + sum_d c_d * theta_d * M_d ("Method: Step 4").

A *filter* (the slides' "kernel i") is one (output, input) kernel of a convolution weight, as in
FAIG's reference code (TencentARC/FAIG; ../shared/ARCHITECTURES.md, ADS): biases, norms and
scales are never selected. This module is plain PyTorch: the scores, the masks, the adaptive
convolutions and the `nafnet_ads` model. The pipeline that runs the four steps is harness/ads/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage
from zoo.factory import register_model
from zoo.nafnet import NAFNet, NAFNetConfig
from zoo.registry import Registry

#: slides, "Method: Step 2": "the ratio of the mask (M_d) was set to 3% ... through comparison studies";
#: the comparison table studies 1, 3 and 5%.
DEFAULT_Q = 3.0
#: FAIG's reference code interpolates in 100 steps (TencentARC/FAIG; ARCHITECTURES.md, ADS)
DEFAULT_FAIG_STEPS = 100


# --------------------------------------------------------------------------------------------
# Filters and their scores


def kernel_weights(model: nn.Module) -> dict[str, Tensor]:
    """Every convolution weight of `model` by parameter name: the tensors whose filters ADS selects."""
    return {f"{name}.weight" if name else "weight": m.weight for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d)}


def filters_per_weight(weights: dict[str, Tensor]) -> dict[str, int]:
    """Number of (output, input) kernels of each convolution weight."""
    return {name: w.shape[0] * w.shape[1] for name, w in weights.items()}


def _per_filter(values: Tensor) -> Tensor:
    """Sum |values| over each kernel's spatial entries: (O, I, kh, kw) -> (O, I)."""
    return values.abs().flatten(2).sum(2)


def faig(model: nn.Module, baseline: dict[str, Tensor], target: dict[str, Tensor],
         batches: Iterable[tuple[Tensor, Tensor]], steps: int = DEFAULT_FAIG_STEPS) -> dict[str, Tensor]:
    """FAIG per filter between `baseline` (theta_um) and `target` (theta_d) parameters on `batches`.

    Slides, "Related works: FAIG" (Xie et al., NeurIPS 2021): along lambda(alpha) = alpha theta_ab +
    (1 - alpha) theta_ta, sum the loss gradient at N points, multiply by theta_ta - theta_ab and
    divide by N. Per filter the entries' absolute values are summed and the loss is the summed
    squared error against the clean image, as in FAIG's reference code (ARCHITECTURES.md, ADS).
    Returns an (O, I) score map per convolution weight name.
    """
    names = list(kernel_weights(model))
    params = {n: baseline[n] for n, _ in model.named_parameters()}
    buffers = dict(model.named_buffers())
    gradient_sum = {n: torch.zeros_like(baseline[n]) for n in names}
    batches = list(batches)
    for t in range(steps):
        alpha = t / steps  # alpha_t = t / N, t = 0 .. N-1: from the target towards the baseline
        point = {n: (alpha * baseline[n] + (1 - alpha) * target[n]).detach().requires_grad_(n in gradient_sum)
                 for n in params}
        for degraded, clean in batches:
            restored = functional_call(model, ({**point, **buffers}), (degraded,))
            loss = (restored - clean).pow(2).sum()
            grads = torch.autograd.grad(loss, [point[n] for n in names])
            for n, g in zip(names, grads):
                gradient_sum[n] += g
    return {n: _per_filter(gradient_sum[n] * (target[n] - baseline[n]) / steps) for n in names}


def faig_sd(model: nn.Module, baseline: dict[str, Tensor], target: dict[str, Tensor],
            own: list[tuple[Tensor, Tensor]], others: list[list[tuple[Tensor, Tensor]]],
            steps: int = DEFAULT_FAIG_STEPS) -> dict[str, Tensor]:
    """FAIG-SD of one degradation: FAIG on its own images minus the mean FAIG on the other degradations'.

    FAIG's reference code scores a degradation's discriminative filters as FAIG on its images minus
    FAIG on the other degradation's (ARCHITECTURES.md, ADS); with k > 2 degradations the slides'
    FAIG-SD ("Step 2: FAIG for multiple degradations") is read as minus the mean over the others.
    """
    score = faig(model, baseline, target, own, steps)
    if not others:
        return score
    rest = [faig(model, baseline, target, batches, steps) for batches in others]
    return {n: score[n] - sum(r[n] for r in rest) / len(rest) for n in score}


def top_filters(scores: dict[str, Tensor], q: float) -> dict[str, Tensor]:
    """Masks (bool, O x I per weight) of the top `q` percent of all filters by score (ties: first in order)."""
    check_q(q)
    names = list(scores)
    flat = torch.cat([scores[n].flatten().float() for n in names])
    count = selected_count(flat.numel(), q)
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    # stable descending sort: equal scores keep network order
    chosen[torch.sort(flat, descending=True, stable=True).indices[:count]] = True
    masks, start = {}, 0
    for n in names:
        size = scores[n].numel()
        masks[n] = chosen[start : start + size].view_as(scores[n])
        start += size
    return masks


def selected_count(total: int, q: float) -> int:
    """How many of `total` filters q percent selects (rounded, at least one)."""
    return max(1, int(round(total * q / 100.0)))


def check_q(q: float) -> None:
    """Refuse a percentage outside (0, 100)."""
    if not (isinstance(q, (int, float)) and 0 < q < 100):
        raise ValueError(f"ADS q (percent of filters per degradation) must be in (0, 100), got {q!r}; "
                         f"the slides use 1, 3 or 5")


# --------------------------------------------------------------------------------------------
# Filter-selection methods (slides, "Comparison studies for selected filter locations")


@dataclass
class SelectionInputs:
    """What a selection method may use: the network, both parameter sets and each degradation's batches."""

    model: nn.Module
    unified: dict[str, Tensor]
    targets: list[dict[str, Tensor]]  # one per degradation
    batches: list[list[tuple[Tensor, Tensor]]]  # one list of (degraded, clean) per degradation
    faig_steps: int = DEFAULT_FAIG_STEPS
    seed: int = 0


SelectionMethod = Callable[[SelectionInputs, int], dict[str, Tensor]]  # (inputs, degradation) -> scores
SELECTIONS: Registry[SelectionMethod] = Registry("selection method")


@SELECTIONS.register("faig")
def _select_faig(inputs: SelectionInputs, d: int) -> dict[str, Tensor]:
    """Ours in the slides: FAIG-SD scores."""
    others = [b for i, b in enumerate(inputs.batches) if i != d]
    return faig_sd(inputs.model, inputs.unified, inputs.targets[d], inputs.batches[d], others, inputs.faig_steps)


@SELECTIONS.register("weight_diff")
def _select_weight_diff(inputs: SelectionInputs, d: int) -> dict[str, Tensor]:
    """|theta_um - theta_d| per filter (the slides' |theta| column)."""
    return {n: _per_filter(inputs.targets[d][n] - inputs.unified[n]) for n in kernel_weights(inputs.model)}


@SELECTIONS.register("random")
def _select_random(inputs: SelectionInputs, d: int) -> dict[str, Tensor]:
    """Random filters (the slides' Ran column), seeded by (seed, degradation)."""
    generator = torch.Generator().manual_seed(inputs.seed * 1009 + d)
    return {n: torch.rand(w.shape[:2], generator=generator) for n, w in kernel_weights(inputs.model).items()}


@SELECTIONS.register("encoder")
def _select_encoder(inputs: SelectionInputs, d: int) -> dict[str, Tensor]:
    """The encoder's filters (the slides' En column): filters ranked by depth, input side first.

    The slides name the method only; here the q% budget fills the network from its input side,
    so every added filter sits in the encoder (for q up to the encoder's share of filters).
    """
    weights = kernel_weights(inputs.model)
    total = sum(filters_per_weight(weights).values())
    scores, position = {}, 0
    for n, w in weights.items():
        count = w.shape[0] * w.shape[1]
        scores[n] = (total - position - torch.arange(count, dtype=torch.float32)).view(w.shape[:2])
        position += count
    return scores


def check_selection(name: str) -> None:
    """Refuse an unknown selection method, listing the valid ones."""
    SELECTIONS.get(name)


# --------------------------------------------------------------------------------------------
# CNN-ADS: convolutions whose selected filters move with the predicted degradation


class ADSConv2d(nn.Conv2d):
    """A convolution with per-degradation added filters: W_b = W + sum_d c[b, d] * theta_d * M_d.

    The added filters of degradation d are a parameter `ads_delta_d` (n_d x kh*kw) and the flat
    indices of the filters they sit on a buffer `ads_index_d` (the mask M_d). Each sample gets its
    own kernel, run as one grouped convolution over the batch (CondConv's batching, STYLE.md).
    """

    ads_coeff: Tensor | None = None  # B x k, set by the owning model around a forward pass

    @classmethod
    def wrap(cls, conv: nn.Conv2d, kinds: int) -> "ADSConv2d":
        """An ADSConv2d sharing `conv`'s parameters (same state-dict names), with no filter selected."""
        if conv.padding_mode != "zeros":
            raise ValueError("ADS convolutions support zero padding only")
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.__dict__.update({k: v for k, v in conv.__dict__.items()
                             if k not in ("_parameters", "_buffers", "_modules")})
        new._parameters = dict(conv._parameters)
        new._buffers = dict(conv._buffers)
        new._modules = dict(conv._modules)
        new.kinds = kinds
        for d in range(kinds):
            new.set_filters(d, torch.zeros(0, dtype=torch.long, device=conv.weight.device))
        return new

    def set_filters(self, d: int, index: Tensor, delta: Tensor | None = None) -> None:
        """Select filters `index` (flat over O x I) for degradation `d`; their added kernels start at `delta` (else 0)."""
        spatial = self.weight.shape[2] * self.weight.shape[3]
        index = index.to(torch.long)
        if delta is None:
            delta = torch.zeros(index.numel(), spatial, dtype=self.weight.dtype, device=self.weight.device)
        self.register_buffer(f"ads_index_{d}", index.clone())
        setattr(self, f"ads_delta_{d}", nn.Parameter(delta.detach().clone().reshape(index.numel(), spatial)))

    def added_parameters(self) -> list[nn.Parameter]:
        """The added kernels of every degradation."""
        return [getattr(self, f"ads_delta_{d}") for d in range(self.kinds)]

    def added_weights(self) -> Tensor:
        """The dense added weights of every degradation: k x (O*I*kh*kw)."""
        out_in = self.weight.shape[0] * self.weight.shape[1]
        rows = []
        for d in range(self.kinds):
            delta, index = getattr(self, f"ads_delta_{d}"), getattr(self, f"ads_index_{d}")
            dense = delta.new_zeros(out_in, delta.shape[1]).index_add(0, index, delta)
            rows.append(dense.flatten())
        return torch.stack(rows)

    def forward(self, x: Tensor) -> Tensor:
        coeff = self.ads_coeff
        if coeff is None or not any(getattr(self, f"ads_index_{d}").numel() for d in range(self.kinds)):
            return super().forward(x)
        batch = x.shape[0]
        weights = self.weight.flatten()[None] + coeff.to(self.weight.dtype) @ self.added_weights()  # B x numel
        weights = weights.view(batch * self.out_channels, *self.weight.shape[1:])
        bias = None if self.bias is None else self.bias.repeat(batch)
        out = F.conv2d(x.reshape(1, batch * x.shape[1], *x.shape[2:]), weights, bias, self.stride, self.padding,
                       self.dilation, self.groups * batch)
        return out.view(batch, self.out_channels, *out.shape[2:])


def make_adaptive(host: nn.Module, kinds: int) -> dict[str, ADSConv2d]:
    """Replace every convolution of `host` by an ADSConv2d (in place); returns them by weight name."""
    convs = {}
    for name, module in list(host.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Conv2d:
                wrapped = ADSConv2d.wrap(child, kinds)
                setattr(module, child_name, wrapped)
                full = f"{name}.{child_name}" if name else child_name
                convs[f"{full}.weight"] = wrapped
    return convs


def spread_indices(weights: dict[str, Tensor], q: float) -> dict[str, Tensor]:
    """A data-free choice of q% of the filters, spread evenly over the network (flat O x I indices per weight).

    Sizes a freshly built CNN-ADS (parameter counts on the meta device) before the pipeline
    installs the selected masks.
    """
    sizes = filters_per_weight(weights)
    total = sum(sizes.values())
    count = selected_count(total, q)
    chosen = (torch.arange(count, dtype=torch.float64, device="cpu") * total / count).long()
    indices, start = {}, 0
    for n, size in sizes.items():
        low, high = torch.searchsorted(chosen, torch.tensor([start, start + size], device="cpu"))
        indices[n] = chosen[low:high] - start
        start += size
    return indices


# --------------------------------------------------------------------------------------------
# The degradation classifier and the nafnet_ads model


@dataclass(frozen=True)
class ClassifierConfig:
    """The degradation classifier: strided 3x3 convolutions, global pooling, a linear layer.

    The slides ("Method: Step 3") give the DC's job, not its layers; this is a small CNN of
    `depth` stride-2 stages doubling the width from `width`.
    """

    width: int = 32
    depth: int = 4


class DegradationClassifier(nn.Module):
    """Predicts the degradation type of an input image: logits over k kinds."""

    def __init__(self, config: ClassifierConfig, kinds: int):
        super().__init__()
        layers, channels = [], 3
        for i in range(config.depth):
            out = config.width * 2 ** min(i, 2)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, kinds)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean((2, 3)))


@dataclass(frozen=True)
class ADSConfig:
    """CNN-ADS on a host network (`--option q=1`, `--option selection=weight_diff`, ...)."""

    host: NAFNetConfig = field(default_factory=NAFNetConfig)
    degradation_types: int = 3  # k; set from the setting's degradation kinds at submit
    q: float = DEFAULT_Q  # percent of filters added per degradation
    selection: str = "faig"  # faig | weight_diff | random | encoder
    faig_steps: int = DEFAULT_FAIG_STEPS
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def __post_init__(self):
        check_q(self.q)
        check_selection(self.selection)
        if self.degradation_types < 1:
            raise ValueError(f"ADS needs at least one degradation type, got {self.degradation_types}")
        if self.faig_steps < 1:
            raise ValueError(f"faig_steps must be >= 1, got {self.faig_steps}")


class NAFNetADS(RestorationModel):
    """NAFNet with adaptive discriminative filters: the host's kernels plus c_d-weighted added filters.

    Only the added kernels train (slides, "Step 4": "train the added kernels"); the host (the
    unified model) and the classifier come frozen from the pipeline's earlier stages.
    """

    def __init__(self, config: ADSConfig):
        super().__init__()
        self.config = config
        self.host = NAFNet(config.host)
        self.pad_multiple = self.host.pad_multiple
        self.classifier = DegradationClassifier(config.classifier, config.degradation_types)
        self.adaptive = make_adaptive(self.host, config.degradation_types)
        placeholder = spread_indices(self.kernel_weights(), config.q)
        for conv_name, conv in self.adaptive.items():
            for d in range(config.degradation_types):
                conv.set_filters(d, placeholder[conv_name].to(conv.weight.device))

    def kernel_weights(self) -> dict[str, Tensor]:
        """The host's convolution weights by name (the filters ADS may select)."""
        return {n: c.weight for n, c in self.adaptive.items()}

    def set_masks(self, masks: list[dict[str, Tensor]], deltas: list[dict[str, Tensor]] | None = None) -> None:
        """Install masks M_d (O x I bool per weight) and, optionally, the initial added kernels (O x I x kh x kw)."""
        if len(masks) != self.config.degradation_types:
            raise ValueError(f"{len(masks)} masks for {self.config.degradation_types} degradation types")
        for name, conv in self.adaptive.items():
            for d, mask in enumerate(masks):
                index = mask[name].flatten().nonzero().flatten().to(conv.weight.device)
                delta = None
                if deltas is not None:
                    delta = deltas[d][name].flatten(0, 1).flatten(1)[index]
                conv.set_filters(d, index, delta)

    def masks(self) -> list[dict[str, Tensor]]:
        """The installed masks M_d."""
        result = []
        for d in range(self.config.degradation_types):
            per = {}
            for name, conv in self.adaptive.items():
                mask = torch.zeros(conv.weight.shape[0] * conv.weight.shape[1], dtype=torch.bool, device="cpu")
                mask[getattr(conv, f"ads_index_{d}").cpu()] = True
                per[name] = mask.view(conv.weight.shape[:2])
            result.append(per)
        return result

    def load_ads_state(self, state: dict[str, Tensor]) -> None:
        """Load a CNN-ADS state dict: masks first (they fix the added kernels' shapes), then all tensors."""
        for name, conv in self.adaptive.items():
            prefix = "host." + name[: -len("weight")]
            for d in range(self.config.degradation_types):
                conv.set_filters(d, state[f"{prefix}ads_index_{d}"])
        self.load_state_dict(state)

    def added_parameters(self) -> list[nn.Parameter]:
        """Every added kernel (the parameters CNN-ADS trains)."""
        return [p for conv in self.adaptive.values() for p in conv.added_parameters()]

    def degradation_probabilities(self, degraded: Tensor) -> Tensor:
        """c: the classifier's predicted probability of each degradation type (B x k)."""
        return self.classifier(degraded).softmax(-1)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        coeff = self.degradation_probabilities(degraded)
        for conv in self.adaptive.values():
            conv.ads_coeff = coeff
        try:
            return self.host(degraded)
        finally:
            for conv in self.adaptive.values():
                conv.ads_coeff = None

    def training_stages(self) -> list[TrainingStage]:
        """CNN-ADS trains its added kernels only (the pipeline's step 4)."""
        return [TrainingStage("ads")]

    def stage_parameters(self, stage: TrainingStage) -> list[nn.Parameter]:
        """The added kernels."""
        return self.added_parameters()


class ClassifierTraining(RestorationModel):
    """Step 3 as a model the training loop can run: cross-entropy of the DC on degradation labels."""

    def __init__(self, classifier: DegradationClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        return degraded

    def training_loss(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                      stage: TrainingStage) -> LossTerms:
        """Cross-entropy of the predicted degradation type against `cond.degradation_index`."""
        logits = self.classifier(degraded)
        loss = F.cross_entropy(logits, cond.degradation_index)
        accuracy = (logits.argmax(-1) == cond.degradation_index).float().mean()
        return LossTerms(total=loss, parts={"classifier": loss, "accuracy": accuracy.detach()})


def added_parameter_count(model: NAFNetADS) -> int:
    """Parameters CNN-ADS adds to its host (the added kernels; the classifier is counted apart)."""
    return sum(p.numel() for p in model.added_parameters())


@register_model(
    configs={
        # the host is the paper NAFNet (17.1M; slides' table "NAFNet Ours ... 18.9")
        "paper": ADSConfig(),
        "tiny": ADSConfig(host=NAFNetConfig(width=16, encoder_blocks=(1, 1, 1, 2), middle_blocks=1),
                          # 8 FAIG steps instead of 100: the CPU budget of the tiny variant
                          faig_steps=8, classifier=ClassifierConfig(width=16)),
    },
    summary="NAFNet with ADS: FAIG-SD-selected filters per degradation, weighted by a degradation classifier",
    source="Park, Lee, Chun, All-in-one Image Restoration for Unknown Degradations Using Adaptive "
           "Discriminative Filters for Specific Degradations, CVPR 2023 (slides)",
)
def nafnet_ads(config: ADSConfig) -> NAFNetADS:
    """Build CNN-ADS on NAFNet (run its four-step pipeline with `harness submit --model nafnet_ads`)."""
    return NAFNetADS(config)


def is_pipeline_model(name: str) -> bool:
    """True for models trained by the ADS multi-stage pipeline rather than one training run."""
    return name in PIPELINE_MODELS


#: ADS models and their unified host model's zoo name
PIPELINE_MODELS = {"nafnet_ads": "nafnet"}

