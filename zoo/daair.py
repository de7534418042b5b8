"""DaAIR: efficient degradation-aware any image restoration (Zamfir et al., 2024; ../shared/seeds/003).

A scaled-down Restormer-style U-shaped network (Sec. 3, Fig. 3; App. A) whose every block runs a
Degradation-aware Learner (DaLe, Sec. 3.1) on its normalised input before attention:

* a degradation-agnostic expert A for the whole batch and one specialised expert E_k per
  degradation type; each projects the C channels to a low-rank space of C / r channels and runs
  a large-kernel Conv2Former-style block there (Sec. 3.1 "Expert design");
* a router (a linear layer, Sec. 3.1 "Routing") sends each sample to one specialised expert
  (top-1); it is trained with an auxiliary degradation-classification loss (Fig. 6);
* the specialised and agnostic features are multiplied (Hadamard product, Eq. 1-3) and a shared
  linear layer expands them back to C channels: the degradation-aware features F.

Encoder blocks attend over F (Restormer's channel attention). Decoder blocks replace
self-attention with cross-attention whose keys come from a controller block (Sec. 3.2): a copy
of an encoder agnostic expert that is never trained by gradients, only pulled towards its
source by an exponential moving average after every optimiser step.

Numbers the extracted paper text lost (block counts, low-rank ratio r, EMA factor alpha, loss
weight) could not be recovered from a public source here; every such number below says so and
why it was chosen. The paper's own totals constrain them: about 6M parameters (Tab. 1-2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage
from zoo.factory import register_model
from zoo.restormer import GDFN, MDTA, ChannelLayerNorm, downsample, upsample


@dataclass(frozen=True)
class DaAIRConfig:
    """Widths, depths, experts and control of a DaAIR network."""

    # Base width C, doubled at every level (App. A). 32: not in the extracted text; with the
    # block counts below it gives the paper's "6M" parameters (Tab. 1-2).
    width: int = 32
    # Encoder blocks for levels 1-3 and the latent level 4 (Sec. 4 "Implementation Details": a
    # different number per level; the numbers were lost). About half of Restormer's [4, 6, 6, 8]
    # (the "scaled-down Restormer" of Sec. 4.2 / App. A), fitted so that the whole network has
    # the paper's 6M parameters (Tab. 1-2): 6.09M with 3 degradation types, 6.45M with 5.
    encoder_blocks: tuple[int, int, int, int] = (2, 3, 3, 3)
    # Decoder blocks for levels 3, 2, 1: fewer than the encoder's ("asymmetric encoder-decoder
    # design", Sec. 3); fitted with the encoder's counts above.
    decoder_blocks: tuple[int, int, int] = (1, 2, 2)
    refinement_blocks: int = 2  # half of Restormer's 4, like the encoder; fitted likewise
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)  # Restormer's heads per level (Restormer Sec. 4)
    ffn_expansion: float = 2.66  # Restormer's GDFN factor; DaAIR is built on PromptIR's code (App. A)
    # Ratio between the embedding and the experts' low-rank width, constant over the network
    # (Sec. 4); its value was lost from the extracted text; 4 is our choice.
    rank_ratio: int = 4
    kernel_size: int = 11  # Conv2Former's large depth-wise kernel (Hou et al., CVPR 2023, Sec. 3)
    # Specialised experts per DaLe, one per degradation type of the setting (Sec. 3.1); the
    # harness sets it from the setting's degradation kinds (three_deg: 3, five_deg: 5).
    degradation_types: int = 3
    # EMA factor alpha of the controllers (Sec. 3.2, ablated in Fig. 6); the chosen value was
    # lost from the extracted text; 0.999 is the usual momentum of EMA teachers.
    ema: float = 0.999
    # Weight of the auxiliary degradation-classification loss (Sec. 3.1); not in the extracted
    # text; 0.1 keeps it below the L1 term once the routers have converged.
    routing_weight: float = 0.1
    bias: bool = False  # bias-free convolutions, as in Restormer / PromptIR


class LowRankExpert(nn.Module):
    """C -> C/r projection, then a residual Conv2Former block in the low-rank space.

    Conv2Former's convolutional modulation (Hou et al., Sec. 3): a = DWConv_k(GELU(W_a z)),
    v = W_v z, out = z + W_o (a * v), with a k x k depth-wise kernel.
    """

    def __init__(self, channels: int, rank: int, kernel_size: int, bias: bool):
        super().__init__()
        self.project = nn.Conv2d(channels, rank, 1, bias=bias)
        self.attend = nn.Conv2d(rank, rank, 1, bias=bias)
        self.large_kernel = nn.Conv2d(rank, rank, kernel_size, padding=kernel_size // 2, groups=rank, bias=bias)
        self.value = nn.Conv2d(rank, rank, 1, bias=bias)
        self.out = nn.Conv2d(rank, rank, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        z = self.project(x)
        return z + self.out(self.large_kernel(F.gelu(self.attend(z))) * self.value(z))


class DegradationAwareLearner(nn.Module):
    """DaLe (Sec. 3.1, Eq. 1-3): F = x + W_up(E_k(x) * A(x)), k chosen per sample by the router."""

    def __init__(self, channels: int, config: DaAIRConfig):
        super().__init__()
        rank = max(channels // config.rank_ratio, 1)
        make = lambda: LowRankExpert(channels, rank, config.kernel_size, config.bias)  # noqa: E731
        self.agnostic = make()
        self.experts = nn.ModuleList(make() for _ in range(config.degradation_types))
        # A linear router on the globally averaged normalised features (Sec. 3.1: "linear layers
        # within each DaLe"; the normalised features are what it dispatches).
        self.router = nn.Linear(channels, config.degradation_types)
        self.expand = nn.Conv2d(rank, channels, 1, bias=config.bias)
        self.last_routing: Tensor | None = None  # B x K router distribution of the last pass (detached)
        self.last_logits: Tensor | None = None  # B x K router logits of the last pass (with grad)

    def specialised(self, x: Tensor, choice: Tensor) -> Tensor:
        """Run each sample through its chosen expert, one sub-batch per expert (Sec. 3.1)."""
        order = torch.argsort(choice, stable=True)
        counts = torch.bincount(choice, minlength=len(self.experts)).tolist()
        parts = [self.experts[k](chunk) for k, chunk in enumerate(x[order].split(counts)) if counts[k]]
        return torch.cat(parts)[torch.argsort(order)]

    def forward(self, x: Tensor) -> Tensor:
        logits = self.router(x.mean(dim=(2, 3)))
        probabilities = logits.softmax(dim=-1)
        gate, choice = probabilities.max(dim=-1)
        self.last_logits, self.last_routing = logits, probabilities.detach()
        # The gate value scales the chosen expert's output, as in sparse MoE (Shazeer et al.;
        # Riquelme et al., cited in Sec. 3.1), so the restoration loss also reaches the router.
        specific = self.specialised(x, choice) * gate[:, None, None, None]
        return x + self.expand(specific * self.agnostic(x))


class CrossAttention(nn.Module):
    """Channel attention whose queries and values come from F, its keys from the controller (Sec. 3.2)."""

    def __init__(self, dim: int, key_channels: int, heads: int, bias: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.qv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=bias)
        self.k = nn.Conv2d(key_channels, dim, 1, bias=bias)
        self.k_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, features: Tensor, control: Tensor) -> Tensor:
        b, c, h, w = features.shape
        q, v = self.qv_dwconv(self.qv(features)).chunk(2, dim=1)
        k = self.k_dwconv(self.k(control))
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attention = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attention @ v).reshape(b, c, h, w))


class EncoderBlock(nn.Module):
    """x + MDTA(DaLe(LN(x))), then x + GDFN(LN(x)): DaLe before the attention (Sec. 3)."""

    def __init__(self, dim: int, heads: int, config: DaAIRConfig):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.dale = DegradationAwareLearner(dim, config)
        self.attn = MDTA(dim, heads, config.bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, config.ffn_expansion, config.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.dale(self.norm1(x)))
        return x + self.ffn(self.norm2(x))


class DecoderBlock(nn.Module):
    """Like an encoder block, but cross-attention with keys from the EMA controller (Sec. 3.2)."""

    def __init__(self, dim: int, heads: int, config: DaAIRConfig, source: LowRankExpert):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.dale = DegradationAwareLearner(dim, config)
        # The controller shares the agnostic expert's design (Sec. 3.2) and starts as a copy of
        # its EMA source; its parameters are never optimised, only averaged towards the source.
        self.controller = LowRankExpert(dim, source.project.out_channels, config.kernel_size, config.bias)
        self.controller.load_state_dict(source.state_dict())
        self.controller.requires_grad_(False)
        self.source = [source]  # a plain list: the source is registered in its own encoder block
        self.attn = CrossAttention(dim, source.project.out_channels, heads, config.bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, config.ffn_expansion, config.bias)

    def forward(self, x: Tensor) -> Tensor:
        normed = self.norm1(x)
        x = x + self.attn(self.dale(normed), self.controller(normed))
        return x + self.ffn(self.norm2(x))

    @torch.no_grad()
    def update_controller(self, alpha: float) -> None:
        """controller <- alpha * controller + (1 - alpha) * encoder agnostic expert (Sec. 3.2)."""
        for mine, theirs in zip(self.controller.parameters(), self.source[0].parameters()):
            mine.mul_(alpha).add_(theirs.detach(), alpha=1 - alpha)


class DaAIR(RestorationModel):
    """Encoder levels 1-3, latent, decoder levels 3-1 with controllers, refinement, residuals."""

    pad_multiple = 8  # three 2x down-samplings
    # Top-k routing (DaAIR Sec. 3.2): experts no sample of a batch chose get no gradient that step.
    parameters_may_go_unused = True

    def __init__(self, config: DaAIRConfig):
        super().__init__()
        if config.degradation_types < 1:
            raise ValueError(f"daair needs degradation_types >= 1, got {config.degradation_types}")
        if config.width % config.rank_ratio:
            raise ValueError(f"daair: width {config.width} is not divisible by rank_ratio {config.rank_ratio}")
        self.config = config
        c, bias = config.width, config.bias
        widths = (c, 2 * c, 4 * c, 8 * c)
        self.patch_embed = nn.Conv2d(3, c, 3, padding=1, bias=bias)
        self.encoders = nn.ModuleList(
            nn.Sequential(*[EncoderBlock(widths[i], config.heads[i], config) for _ in range(config.encoder_blocks[i])])
            for i in range(4)
        )
        self.downs = nn.ModuleList(downsample(widths[i], bias) for i in range(3))
        self.ups = nn.ModuleList(upsample(widths[i + 1], bias) for i in reversed(range(3)))
        # Every decoder level concatenates its skip and reduces it back to the level's width with
        # a 1x1 convolution, so its blocks match the encoder's width and their controllers can
        # track the encoder's agnostic experts (Sec. 3.2).
        self.reduces = nn.ModuleList(nn.Conv2d(2 * widths[i], widths[i], 1, bias=bias) for i in reversed(range(3)))
        decoders = []
        for level, count in zip(reversed(range(3)), config.decoder_blocks):
            sources = self.encoders[level]
            # Decoder block j of a level is controlled by encoder block j of the same level.
            decoders.append(nn.Sequential(*[
                DecoderBlock(widths[level], config.heads[level], config, sources[j % len(sources)].dale.agnostic)
                for j in range(count)
            ]))
        self.decoders = nn.ModuleList(decoders)
        self.refinement = nn.Sequential(*[EncoderBlock(c, config.heads[0], config) for _ in range(config.refinement_blocks)])
        self.output = nn.Conv2d(c, 3, 3, padding=1, bias=bias)

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        shallow = self.patch_embed(degraded)
        x, skips = shallow, []
        for level in range(3):
            x = self.encoders[level](x)
            skips.append(x)
            x = self.downs[level](x)
        x = self.encoders[3](x)
        for up, reduce, decoder, skip in zip(self.ups, self.reduces, self.decoders, reversed(skips)):
            x = decoder(reduce(torch.cat([up(x), skip], dim=1)))
        # Global residual from the shallow features to the refinement output (Sec. 3), and the
        # image residual of the PromptIR code DaAIR is built on (App. A).
        return self.output(self.refinement(x) + shallow) + degraded

    def learners(self) -> list[DegradationAwareLearner]:
        """Every DaLe of the network, in forward order."""
        return [m for m in self.modules() if isinstance(m, DegradationAwareLearner)]

    def routing(self) -> dict[str, Tensor]:
        """Router distributions (B x K) of the last forward pass, by module path."""
        return {name: m.last_routing for name, m in self.named_modules() if isinstance(m, DegradationAwareLearner)}

    def training_loss(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                      stage: TrainingStage) -> LossTerms:
        """L1 plus the routers' degradation-classification loss (Sec. 3.1), logged as 'routing'."""
        labels = cond.degradation_index
        if labels is None:
            raise ValueError("daair needs each training sample's degradation label (Conditioning.degradation_index)")
        if labels.max() >= self.config.degradation_types:
            raise ValueError(f"daair has {self.config.degradation_types} experts per DaLe but got degradation "
                             f"label {int(labels.max())}; set degradation_types to the setting's kinds")
        pixel = pixel_loss(self(degraded, cond), target)
        logits = torch.stack([m.last_logits for m in self.learners()])  # L x B x K
        routing = F.cross_entropy(logits.flatten(0, 1), labels.repeat(len(logits)))
        return LossTerms(total=pixel + self.config.routing_weight * routing, parts={"pixel": pixel, "routing": routing})

    def after_optimizer_step(self, stage: TrainingStage) -> None:
        """Pull every controller towards its encoder agnostic expert (Sec. 3.2)."""
        for block in self.modules():
            if isinstance(block, DecoderBlock):
                block.update_controller(self.config.ema)


# CPU-trainable variant: width 8 and one block per level (like the Restormer family's tiny
# variants); rank ratio 2, so that the level-1 experts keep 4 channels; a 7x7 large kernel,
# since the latent of a 64x64 patch is only 8x8. A training step (batch 8, 64x64) costs about
# what a tiny Res-HAIR step does.
TINY_DAAIR = DaAIRConfig(width=8, encoder_blocks=(1, 1, 1, 1), decoder_blocks=(1, 1, 1), refinement_blocks=1,
                         heads=(1, 1, 2, 4), rank_ratio=2, kernel_size=7)


@register_model(
    configs={"paper": DaAIRConfig(), "tiny": TINY_DAAIR},
    summary="DaAIR: low-rank degradation experts with routing and EMA controllers (about 6M)",
    source="Zamfir et al., DaAIR, 2024, Sec. 3-4, Tab. 1-2, 4-5 (../shared/seeds/003)",
)
def daair(config: DaAIRConfig) -> DaAIR:
    """Build a DaAIR network from its configuration."""
    return DaAIR(config)
