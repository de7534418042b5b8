"""`harness data`: print the real datasets' folder layout, validate a tree, or export a setting's test inputs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import setting_names
from harness.cli.registry import command, complete
from zoo.registry import UnknownNameError


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", help="layout | check | export")
    p.add_argument("--root", help="check: the data root to validate")
    complete(p.add_argument("--setting", help="only the datasets of this setting"), setting_names)
    p.add_argument("--data-root", help="export: folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--out", help="export: the folder to write <task>/<image>.png and manifest.json to")
    p.add_argument("--no-decode", action="store_true", help="check: pairing and counts only, do not decode images")


@command("data", "the real datasets' folder layout, a validator for a tree, and the frozen test inputs", _arguments)
def run(args: argparse.Namespace) -> int:
    """`layout` prints the expected tree; `check` validates one (exit 1 when it has problems); `export` writes inputs."""
    from harness.data.tree import check_tree, expected_tree
    from harness.settings import get_setting

    setting = get_setting(args.setting) if args.setting else None
    if args.action == "layout":
        print(expected_tree(setting))
        return 0
    if args.action == "export":
        return _export(setting, args.data_root, args.out)
    if args.action != "check":
        raise UnknownNameError("data action", args.action, ["check", "export", "layout"])
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


def _export(setting, data_root: str | None, out: str | None) -> int:
    """Write the setting's degraded test inputs as 8-bit PNG files and manifest.json under `out`."""
    from harness.data import open_data
    from harness.data.export import export_inputs

    if setting is None or not out:
        raise ValueError("harness data export needs --setting S and --out DIR")
    if data_root and not Path(data_root).is_dir():
        raise ValueError(f"--data-root {data_root}: no such folder")
    data = open_data(setting, str(Path(data_root).resolve()) if data_root else None)
    written = export_inputs(setting, data, Path(out))
    manifest = written.manifest
    print(f"{len(manifest['files'])} test inputs of '{setting.name}' v{manifest['setting_version']} "
          f"({manifest['data_source']}, fingerprint {manifest['fingerprint']}) written to {out}")
    return 0
