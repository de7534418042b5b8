"""The papers' training recipes as profiles: budget, global batch, patch, optimiser and schedule, cited.

`batch_size` is the recipe's effective (global) batch: per-GPU batch x GPUs in the source. It
stays the same on any number of workers and micro-batches (`harness submit --workers N
--accumulate K` split it). Budgets in epochs count the setting's repetition-weighted training set
(harness/runs/budget.py). The loop's optimiser is AdamW; Adam is AdamW with weight_decay 0. Where
a paper and its code disagree, both are here under their own names.
"""
from __future__ import annotations

from harness.runs.profiles import PROFILES, Profile

# Checkpoints and logs of a paper-scale run: every 1,000 / 100 steps (a few minutes of GPU time).
_PAPER_SCALE = {"checkpoint_every": 1000, "log_every": 100}

RECIPES = (
    Profile(
        "hair_paper", "HAIR as its paper states it: 160 epochs, batch 32, lr 2e-4 then 2e-5 for the last 10",
        steps=0, epochs=160, batch_size=32, patch_size=128, lr=2e-4,
        # seed 000 Sec. 4.1: all-in-one batch 32; L1; AdamW (0.9, 0.999); 2e-4 for 150 epochs then
        # 2e-5 for 10; 128x128 patches with flips. Weight decay is not stated: PyTorch's AdamW
        # default 0.01, which the authors' code uses (toummHus/HAIR train.py: AdamW(lr=2e-4)).
        weight_decay=0.01, betas=(0.9, 0.999), warmup_fraction=0.0,
        schedule="step_decay", drop_at=150 / 160, drop_factor=0.1,
        citation="HAIR (seed 000) Sec. 4.1", **_PAPER_SCALE),
    Profile(
        "hair_code", "HAIR as the authors' code trains: 300 epochs, 4 x 8 GPUs, warm-up 15 + cosine to 150",
        steps=0, epochs=300, batch_size=32, patch_size=128, lr=2e-4,
        # toummHus/HAIR options.py: epochs 300, batch_size 4 per GPU, num_gpus 8, patch_size 128;
        # train.py: AdamW(lr=2e-4) (PyTorch defaults: betas 0.9/0.999, weight decay 0.01) and
        # LinearWarmupCosineAnnealingLR(warmup_epochs=15, max_epochs=150) stepped per epoch, so the
        # cosine reaches 0 at epoch 150 and rises again to epoch 300 (here per step, not per epoch).
        weight_decay=0.01, betas=(0.9, 0.999), warmup_fraction=15 / 300, cosine_end=150 / 300,
        citation="toummHus/HAIR options.py, train.py", **_PAPER_SCALE),
    Profile(
        "promptir", "PromptIR's code: 120 epochs, 8 x 4 GPUs, lr 2e-4, warm-up 15 + cosine to 150 epochs",
        steps=0, epochs=120, batch_size=32, patch_size=128, lr=2e-4,
        # va1shn9v/PromptIR options.py: epochs 120, batch_size 8 per GPU, num_gpus 4, patch_size 128;
        # train.py: AdamW(lr=2e-4) (defaults: betas 0.9/0.999, weight decay 0.01),
        # LinearWarmupCosineAnnealingLR(warmup_epochs=15, max_epochs=150) stepped per epoch: training
        # stops at epoch 120, before the cosine's floor (here per step, not per epoch).
        weight_decay=0.01, betas=(0.9, 0.999), warmup_fraction=15 / 120, cosine_end=150 / 120,
        citation="va1shn9v/PromptIR options.py, train.py", **_PAPER_SCALE),
    Profile(
        "daair", "DaAIR: 120 epochs, Adam, cosine decay; batch, crop and lr lost in the seed's text: "
                 "PromptIR's are used",
        steps=0, epochs=120, batch_size=32, patch_size=128, lr=2e-4,
        # seed 003 Sec. 4: 120 epochs "following the training configuration of prior work [31]"
        # (PromptIR); Adam with cosine decay. The seed's text lost the batch size, the crop size, the
        # betas and the initial rate: they are NOT DaAIR's stated numbers but PromptIR's (above).
        # Adam = AdamW with weight decay 0; no warm-up is stated.
        weight_decay=0.0, betas=(0.9, 0.999), warmup_fraction=0.0,
        citation="DaAIR (seed 003) Sec. 4; batch/crop/lr lost in the seed's text, PromptIR's used",
        **_PAPER_SCALE),
    Profile(
        "hyperres", "HyperRes: 1e6 iterations, batch 16, 96 patches, Adam lr 1e-4 / 10 after 5e5",
        steps=1_000_000, batch_size=16, patch_size=96, lr=1e-4,
        # seed 001 Sec. 4.1 (Implementation Details): DIV2K, mini-batch 16, 96x96 crops, L1, Adam
        # (0.9, 0.999), lr 1e-4 decayed by 10 after 5e5 iterations, 1e6 iterations in total.
        weight_decay=0.0, betas=(0.9, 0.999), warmup_fraction=0.0,
        schedule="step_decay", drop_at=0.5, drop_factor=0.1,
        citation="HyperRes (seed 001) Sec. 4.1", **_PAPER_SCALE),
    Profile(
        "nafnet_gopro", "NAFNet on GoPro: 200k iterations, 4 x 8 GPUs, 256 patches, AdamW 1e-3 cosine to 1e-7",
        steps=200_000, batch_size=32, patch_size=256, lr=1e-3,
        # megvii-research/NAFNet options/train/GoPro/NAFNet-width32.yml: batch_size_per_gpu 4,
        # num_gpu 8, gt_size 256; AdamW lr 1e-3, betas [0.9, 0.9], weight_decay 0 (not 1e-3);
        # TrueCosineAnnealingLR T_max 200000, eta_min 1e-7; warmup_iter -1 (none); total_iter
        # 200000. Its loss is PSNRLoss; this loop trains with L1.
        weight_decay=0.0, betas=(0.9, 0.9), warmup_fraction=0.0, min_lr=1e-7,
        citation="megvii-research/NAFNet options/train/GoPro/NAFNet-width32.yml", **_PAPER_SCALE),
)
for _recipe in RECIPES:
    PROFILES.add(_recipe.name, _recipe)
