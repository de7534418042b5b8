"""`harness leaderboard`: rank the finished runs of a setting, beside the papers' reported numbers."""
from __future__ import annotations

import argparse

from harness.cli.common import print_board, profile_names, setting_names
from harness.cli.registry import command, complete


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("--setting", required=True), setting_names)
    p.add_argument("--source", choices=["reproduced", "reported", "all"], default="reproduced",
                   help="reproduced runs (default), the papers' reported rows, or both side by side")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.add_argument("--pick", choices=["best", "latest"], default="best", help="which run stands for a model")
    complete(p.add_argument("--profile", help="only runs of this profile"), profile_names)
    p.add_argument("--view", choices=["rgb", "y", "matlab"],
                   help="the protocol view ranked on (default: the setting's own; matlab after `harness rescore`)")
    p.add_argument("--tracking-uri")


@command("leaderboard", "rank the finished runs of a setting, beside the papers' numbers", _arguments)
def run(args: argparse.Namespace) -> int:
    """Print the leaderboard of a setting from finished MLflow runs."""
    from harness.runs.store import tracking_uri

    print_board(args.setting, tracking_uri(args.tracking_uri), args.format, args.pick, args.profile, args.source, args.view)
    return 0
