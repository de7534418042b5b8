"""AirNet: all-in-one restoration for unknown corruption (Li et al., CVPR 2022).

Two networks (../shared/ARCHITECTURES.md, "AirNet", facts from the authors' public code):

* CBDE, the contrastive degradation encoder: residual blocks (conv-BN-LeakyReLU(0.1)) from 3 to
  64 channels at full resolution (the map the restorer is conditioned on), then to 128 and 256
  with stride 2, global pooling and an MLP 256 -> 256 -> 256. It is trained MoCo-style: a
  momentum copy encodes the keys (momentum 0.999), a queue of past keys gives the negatives,
  temperature 0.07.
* DGRN, the degradation-guided restoration network: a 3 -> 64 head, 5 groups of 5 blocks with
  group and long residuals, a 64 -> 3 tail, no residual from the input image. Every block holds
  two degradation-guided modules: x + modulated deformable 3x3 convolution (offsets and mask
  from a zero-initialised 3x3 convolution on [x, condition]) + SFT (x * gamma + beta, each
  from the condition by 1x1 -> LeakyReLU -> 1x1).

Training (authors' train.py) has two stages, expressed as ``training_stages``: first the
contrastive loss alone trains the encoder; then L1 + 0.1 x contrastive trains both, at a tenth
of the learning rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contract import Conditioning, LossTerms, PixelLoss, RestorationModel, TrainingStage
from zoo.factory import register_model

SLOPE = 0.1  # LeakyReLU slope throughout AirNet (authors' encoder.py and DGRN.py)


@dataclass(frozen=True)
class AirNetConfig:
    """Widths and depths of CBDE and DGRN, and the contrastive training recipe."""

    encoder_widths: tuple[int, int, int] = (64, 128, 256)  # CBDE ResBlocks 3 -> 64 -> 128 -> 256
    embedding: int = 256  # CBDE's MLP 256 -> 256 -> 256, and the MoCo key size
    width: int = 64  # DGRN feature width; the condition map has encoder_widths[0] channels
    groups: int = 5  # DGRN: 5 groups ...
    blocks: int = 5  # ... of 5 blocks each
    momentum: float = 0.999  # MoCo key-encoder momentum (authors' moco.py)
    temperature: float = 0.07  # MoCo softmax temperature (authors' moco.py)
    # MoCo queue length: batch x 256 in the authors' code, whose batch is one sample per
    # degradation type (5 for three_deg), so 1,280.
    queue: int = 1280
    contrastive_weight: float = 0.1  # joint stage: L1 + 0.1 x contrastive (authors' train.py)
    # Share of the budget for the encoder warm-up: 100 epochs of the 1,500 the paper trains
    # (authors' option.py, epochs_encoder = 100; paper length from their issue #16).
    encoder_fraction: float = 100 / 1500
    # Joint-stage learning rate relative to the warm-up's: 1e-4 after 1e-3 (authors' train.py).
    joint_lr_scale: float = 0.1
    # The key view is a random crop of this fraction of the patch side (see AirNet.views).
    key_crop: float = 0.5


# ----------------------------------------------------------------------------------------------
# CBDE: contrastive-based degradation encoder


class EncoderResBlock(nn.Module):
    """LeakyReLU(conv-BN-LeakyReLU-conv-BN (x) + conv1x1-BN (x)), stride on the first convolution."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(SLOPE),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.body(x) + self.shortcut(x), SLOPE)


class DegradationEncoder(nn.Module):
    """Image -> (condition map at full resolution, projected embedding for the contrastive loss)."""

    def __init__(self, config: AirNetConfig):
        super().__init__()
        c1, c2, c3 = config.encoder_widths
        self.condition = EncoderResBlock(3, c1, stride=1)
        self.features = nn.Sequential(EncoderResBlock(c1, c2, stride=2), EncoderResBlock(c2, c3, stride=2))
        self.mlp = nn.Sequential(nn.Linear(c3, config.embedding), nn.LeakyReLU(SLOPE),
                                 nn.Linear(config.embedding, config.embedding))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        condition = self.condition(x)
        return condition, self.mlp(self.features(condition).mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------
# DGRN: degradation-guided restoration network


def sampled_deform_conv2d(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, padding: int) -> Tensor:
    """Modulated deformable convolution (stride 1, one offset group) by bilinear sampling.

    The same function as ``torchvision.ops.deform_conv2d(x, offset, weight, padding=padding,
    mask=mask)``: offsets are (dy, dx) per kernel tap, samples outside the image are zero. On CPU
    torchvision's backward pass is about 7x slower than its forward (0.9 s for one 16-channel
    64x64 batch of 8 here); one ``grid_sample`` over all taps and a matrix product take 0.2 s
    for forward and backward together, at the cost of a K-times larger intermediate, which
    is why CUDA inputs keep torchvision's kernel.
    """
    b, c, h, w = x.shape
    out, _, kh, kw = weight.shape
    taps = kh * kw
    tap_y = torch.arange(kh, dtype=x.dtype, device=x.device).repeat_interleave(kw)[:, None, None]
    tap_x = torch.arange(kw, dtype=x.dtype, device=x.device).repeat(kh)[:, None, None]
    offset = offset.view(b, taps, 2, h, w)
    y = torch.arange(h, dtype=x.dtype, device=x.device)[:, None] - padding + tap_y + offset[:, :, 0]
    x_pos = torch.arange(w, dtype=x.dtype, device=x.device) - padding + tap_x + offset[:, :, 1]
    # Pixel coordinates to grid_sample's [-1, 1] (align_corners=False: pixel i spans [i, i+1)).
    grid = torch.stack([(2 * x_pos + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1).view(b, taps * h, w, 2)
    samples = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    samples = samples.view(b, c, taps, h, w) * mask.view(b, 1, taps, h, w)
    return (weight.reshape(out, c * taps) @ samples.view(b, c * taps, h * w)).view(b, out, h, w)


class GuidedDeformableConv(nn.Module):
    """Modulated deformable 3x3 convolution whose offsets and mask come from [x, condition]."""

    def __init__(self, channels: int, condition_channels: int, kernel_size: int = 3):
        super().__init__()
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # as an ordinary nn.Conv2d kernel
        # 2 offsets and 1 mask value per kernel tap; zero-initialised, so training starts from
        # a plain convolution with mask 0.5 (authors' deform_conv.py).
        self.offset_mask = nn.Conv2d(channels + condition_channels, 3 * kernel_size**2, kernel_size,
                                     padding=self.padding)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        dy_dx_1, dy_dx_2, mask = self.offset_mask(torch.cat([x, condition], dim=1)).chunk(3, dim=1)
        offset = torch.cat([dy_dx_1, dy_dx_2], dim=1)
        if x.is_cuda:
            # imported here: torchvision.ops pulls in torch._dynamo (about 2 s per process on a CPU)
            from torchvision.ops import deform_conv2d

            return deform_conv2d(x, offset, self.weight, padding=self.padding, mask=mask.sigmoid())
        return sampled_deform_conv2d(x, offset, mask.sigmoid(), self.weight, self.padding)


class SpatialFeatureTransform(nn.Module):
    """x * gamma(condition) + beta(condition), each by 1x1 -> LeakyReLU -> 1x1 (bias-free)."""

    def __init__(self, channels: int, condition_channels: int):
        super().__init__()
        branch = lambda: nn.Sequential(  # noqa: E731
            nn.Conv2d(condition_channels, channels, 1, bias=False), nn.LeakyReLU(SLOPE),
            nn.Conv2d(channels, channels, 1, bias=False))
        self.gamma, self.beta = branch(), branch()

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return x * self.gamma(condition) + self.beta(condition)


class GuidedModule(nn.Module):
    """Degradation-guided module: x + DCN(x | condition) + SFT(x | condition)."""

    def __init__(self, channels: int, condition_channels: int):
        super().__init__()
        self.dcn = GuidedDeformableConv(channels, condition_channels)
        self.sft = SpatialFeatureTransform(channels, condition_channels)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        return x + self.dcn(x, condition) + self.sft(x, condition)


class GuidedBlock(nn.Module):
    """act(DGM) -> act(conv) -> act(DGM) -> conv, plus the block input."""

    def __init__(self, channels: int, condition_channels: int):
        super().__init__()
        self.guide1 = GuidedModule(channels, condition_channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.guide2 = GuidedModule(channels, condition_channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        out = F.leaky_relu(self.guide1(x, condition), SLOPE)
        out = F.leaky_relu(self.conv1(out), SLOPE)
        out = F.leaky_relu(self.guide2(out, condition), SLOPE)
        return x + self.conv2(out)


class GuidedGroup(nn.Module):
    """`blocks` guided blocks and a 3x3 convolution, with a residual around the group."""

    def __init__(self, channels: int, condition_channels: int, blocks: int):
        super().__init__()
        self.blocks = nn.ModuleList(GuidedBlock(channels, condition_channels) for _ in range(blocks))
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        out = x
        for block in self.blocks:
            out = block(out, condition)
        return x + self.conv(out)


class Restorer(nn.Module):
    """DGRN: head, groups with a long residual, tail (no residual from the input image)."""

    def __init__(self, config: AirNetConfig):
        super().__init__()
        c, cond = config.width, config.encoder_widths[0]
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.groups = nn.ModuleList(GuidedGroup(c, cond, config.blocks) for _ in range(config.groups))
        self.body_end = nn.Conv2d(c, c, 3, padding=1)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        head = self.head(x)
        out = head
        for group in self.groups:
            out = group(out, condition)
        return self.tail(self.body_end(out) + head)


# ----------------------------------------------------------------------------------------------
# AirNet: encoder + restorer + the contrastive training


class AirNet(RestorationModel):
    """CBDE conditions DGRN; a MoCo key encoder and queue train CBDE contrastively."""

    def __init__(self, config: AirNetConfig):
        super().__init__()
        if config.queue < 1:
            raise ValueError(f"airnet needs a positive queue length, got {config.queue}")
        self.config = config
        self.encoder = DegradationEncoder(config)
        # The key encoder starts as a copy of the query encoder and only follows it by momentum.
        self.key_encoder = DegradationEncoder(config)
        self.key_encoder.load_state_dict(self.encoder.state_dict())
        self.key_encoder.requires_grad_(False)
        self.restorer = Restorer(config)
        # One key per column and a one-element pointer, the layout of the authors' net/moco.py,
        # so that their released checkpoints (E.E.queue, E.E.queue_ptr) load as they are.
        self.register_buffer("queue", F.normalize(torch.randn(config.embedding, config.queue), dim=0))
        self.register_buffer("queue_position", torch.zeros(1, dtype=torch.long))

    def forward(self, degraded: Tensor, cond: Conditioning | None = None) -> Tensor:
        condition, _ = self.encoder(degraded)
        return self.restorer(degraded, condition)

    def training_stages(self) -> list[TrainingStage]:
        """Encoder warm-up with the contrastive loss, then joint training (authors' train.py)."""
        c = self.config
        return [TrainingStage("encoder", c.encoder_fraction), TrainingStage("joint", 1 - c.encoder_fraction, c.joint_lr_scale)]

    def stage_parameters(self, stage: TrainingStage):
        """The warm-up trains the query encoder only; the joint stage everything trainable."""
        params = self.encoder.parameters() if stage.name == "encoder" else self.parameters()
        return [p for p in params if p.requires_grad]

    def views(self, degraded: Tensor) -> tuple[Tensor, Tensor]:
        """Query and key views of each degraded patch.

        AirNet takes two random crops of the same degraded image (authors' dataset_utils.py).
        The harness gives one patch per sample, so the query is the whole patch (the restorer
        needs it whole) and the key a random `key_crop` sub-crop of it, at its own position.
        """
        h, w = degraded.shape[-2:]
        kh, kw = (min(size, max(int(size * self.config.key_crop), 8)) for size in (h, w))
        top = int(torch.randint(0, h - kh + 1, ()).item())
        left = int(torch.randint(0, w - kw + 1, ()).item())
        return degraded, degraded[..., top : top + kh, left : left + kw]

    def contrastive_loss(self, query_embedding: Tensor, key_view: Tensor) -> Tensor:
        """InfoNCE of each query against its key and the queue's negatives (MoCo)."""
        q = F.normalize(query_embedding, dim=1)
        with torch.no_grad():
            _, key_embedding = self.key_encoder(key_view)
            k = F.normalize(key_embedding, dim=1)
        positive = (q * k).sum(dim=1, keepdim=True)
        negative = q @ self.queue.clone()
        logits = torch.cat([positive, negative], dim=1) / self.config.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        self.enqueue(k)
        return loss

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Replace the oldest keys of the queue with `keys` (wrapping around its end)."""
        length = self.queue.shape[1]
        slots = (self.queue_position + torch.arange(len(keys), device=keys.device)) % length
        self.queue[:, slots] = keys.T
        self.queue_position.copy_((self.queue_position + len(keys)) % length)

    def training_loss(self, degraded: Tensor, target: Tensor, cond: Conditioning, pixel_loss: PixelLoss,
                      stage: TrainingStage) -> LossTerms:
        """Warm-up: contrastive only; joint: L1 + weight x contrastive (authors' train.py)."""
        query, key = self.views(degraded)
        condition, embedding = self.encoder(query)
        contrastive = self.contrastive_loss(embedding, key)
        if stage.name == "encoder":
            return LossTerms(total=contrastive, parts={"contrastive": contrastive})
        pixel = pixel_loss(self.restorer(query, condition), target)
        total = pixel + self.config.contrastive_weight * contrastive
        return LossTerms(total=total, parts={"pixel": pixel, "contrastive": contrastive})

    @torch.no_grad()
    def after_optimizer_step(self, stage: TrainingStage) -> None:
        """Momentum update of the key encoder (MoCo): k <- m k + (1 - m) q."""
        m = self.config.momentum
        for key, query in zip(self.key_encoder.parameters(), self.encoder.parameters()):
            key.mul_(m).add_(query.detach(), alpha=1 - m)


# CPU-trainable variant: the same topology at an eighth of the widths and 2 groups of 1 block
# (full-resolution deformable convolutions dominate its cost: a step at batch 8, 64x64 then
# costs about what a tiny Res-HAIR step does).
# A 600-step budget cannot afford AirNet's tenfold drop of the learning rate after a short
# warm-up, so the tiny variant warms the encoder up for 15% of the steps and keeps the rate.
TINY_AIRNET = AirNetConfig(encoder_widths=(8, 16, 32), embedding=32, width=8, groups=2, blocks=1, queue=256,
                           encoder_fraction=0.15, joint_lr_scale=1.0)


@register_model(
    configs={"paper": AirNetConfig(), "tiny": TINY_AIRNET},
    summary="AirNet: contrastive degradation encoder + degradation-guided restorer (8.93M)",
    source="Li et al., AirNet, CVPR 2022; authors' code XLearning-SCU/2022-CVPR-AirNet (ARCHITECTURES.md)",
)
def airnet(config: AirNetConfig) -> AirNet:
    """Build AirNet from its configuration."""
    return AirNet(config)
