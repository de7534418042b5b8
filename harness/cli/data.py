"""`harness data`: print the real datasets' folder layout, or validate a tree against it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import setting_names
from harness.cli.registry import command, complete
from zoo.registry import UnknownNameError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", help="layout | check")
    p.add_argument("--root", help="check: the data root to validate")
    complete(p.add_argument("--setting", help="only the datasets of this setting"), setting_names)
    p.add_argument("--no-decode", action="store_true", help="check: pairing and counts only, do not decode images")


@command("data", "the real datasets' folder layout, and a validator for a tree", _arguments)
def run(args: argparse.Namespace) -> int:
    """`layout` prints the expected tree; `check` validates one (exit 1 when it has problems)."""
    from harness.data.tree import check_tree, expected_tree
    from harness.settings import get_setting

    setting = get_setting(args.setting) if args.setting else None
    if args.action == "layout":
        print(expected_tree(setting))
        return 0
    if args.action != "check":
        raise UnknownNameError("data action", args.action, ["check", "layout"])
    if not args.root:
        raise ValueError("harness data check needs --root DIR")
    report = check_tree(Path(args.root), setting, decode=not args.no_decode)
    for name, count in report.counts.items():
        print(f"  {name:<20} {count}")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    scope = f"setting '{setting.name}'" if setting else "every setting"
    if report.ok:
        print(f"{args.root}: OK for {scope}")
        return 0
    print(f"{args.root}: {len(report.problems)} problem(s) for {scope}", file=sys.stderr)
    return 1
