"""`harness restore`: restore one of the user's images with a finished run's model."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.registry import command


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="MLflow run id of a FINISHED run, or a model URI: "
                                                "runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS")
    p.add_argument("--input", required=True, help="image file to restore")
    p.add_argument("--output", help="where to write the PNG (default: <input>_restored.png)")
    p.add_argument("--level", type=float, help="continuous settings: the degradation level to restore at "
                                               "(e.g. sigma 25); default: the model's own estimate")
    p.add_argument("--tracking-uri")


@command("restore", "restore your own image with a finished run's model (run id, runs:/ or models:/ URI)", _arguments)
def run(args: argparse.Namespace) -> int:
    """Restore one image file and say which model, run and level restored it."""
    from harness.runs.restore import restore_file
    from harness.runs.store import tracking_uri

    source = Path(args.input)
    output = Path(args.output) if args.output else source.with_name(f"{source.stem}_restored.png")
    used = restore_file(args.run, tracking_uri(args.tracking_uri), source, output, args.level)
    level = "" if used["level"] is None else f" at level {used['level']:.4g} ({used['level_source']})"
    origin = args.run if args.run.startswith(("runs:/", "models:/")) else f"run {args.run}"
    print(f"restored {source} with {used['model']} ({origin}, setting {used['setting']}){level} -> {output}")
    return 0
