"""`harness score`: score a folder of restored images against a folder of targets, paired by name."""
from __future__ import annotations

import argparse
import sys

from harness.cli.common import metric_names
from harness.cli.registry import command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="folder of restored images")
    p.add_argument("--target", required=True, help="folder of ground-truth images with the same file names")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim (`harness list metrics`)")
    p.add_argument("--protocol", default="promptir", help="a name from `harness list protocols` (default: promptir)")
    p.add_argument("--border", type=int, help="override the protocol's border crop (pixels per side)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--device", default="cpu")


@command("score", "score a folder of restored images against targets (paired by file name)", _arguments)
def run(args: argparse.Namespace) -> int:
    """Score restored images against targets under a protocol; print per image and the mean."""
    import dataclasses

    from harness.scoring.folders import render, score_folders
    from harness.settings import get_protocol

    protocol = get_protocol(args.protocol)
    if args.border is not None:
        protocol = dataclasses.replace(protocol, name=f"{protocol.name}+border{args.border}", border=args.border)
    result = score_folders(args.pred, args.target, metric_names(args.metrics), protocol, args.device)
    for message in result.missing.values():
        print(f"warning: {message}", file=sys.stderr)
    print(render(result, args.format), end="")
    return 0
