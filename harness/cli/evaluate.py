"""`harness evaluate`: score the authors' released weights, or a folder of restored images, on a setting and rank them."""
from __future__ import annotations

import argparse
import ast
import json
from typing import Any

from harness.cli.common import add_model_file, add_speed_options, check_precision_option, load_plugins, metric_names, model_names, print_result, setting_names
from harness.cli.registry import command, complete


def parse_value(text: str) -> Any:
    """One `--arg` value: a Python or JSON literal (16, 2.66, [4,6,6,8], True, false), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_public_args(pairs: list[str]) -> dict[str, Any]:
    """`--arg KEY=VALUE` pairs as the keyword arguments of the authors' public constructor."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--arg expects KEY=VALUE (a public constructor argument), got '{pair}'")
        args[key.strip()] = parse_value(value.strip())
    return args


def _arguments(p: argparse.ArgumentParser) -> None:
    complete(p.add_argument("--model", help="a zoo model with a released-weights adapter"), model_names)
    add_model_file(p)
    p.add_argument("--outputs", metavar="DIR", help="instead of --model: a folder of restored images "
                                                    "<task>/<image>.png (the names `harness data export` writes)")
    p.add_argument("--name", help="with --outputs: the method's name on the leaderboard")
    p.add_argument("--weights", metavar="FILE|URI",
                   help="the authors' released checkpoint (.pth, .ckpt, .safetensors), or a model a run logged: "
                        "runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS (then --model is not needed)")
    p.add_argument("--estimator-weights", metavar="FILE",
                   help="hyperres: the level estimator's file (noise_detect.pth)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of the authors' public constructor, as a Python literal "
                        "(e.g. dim=48, num_blocks=[4,6,6,8], LayerNorm_type=BiasFree)")
    complete(p.add_argument("--setting", required=True, help="a name from `harness list settings`"), setting_names)
    p.add_argument("--data-root", help="folder of real datasets (default: the embedded synthetic suite)")
    p.add_argument("--metrics", help="comma-separated metrics beyond psnr,ssim (`harness list metrics`)")
    p.add_argument("--gpus", type=int, default=0, help="0: CPU (default); 1 or more: evaluate on the CUDA GPU")
    p.add_argument("--tile", type=int, metavar="N",
                   help="restore in overlapping N x N tiles (rounded to the model's multiple) when memory is short")
    p.add_argument("--tile-overlap", type=int, metavar="N", help="pixels shared by neighbouring tiles "
                                                                 "(default: a quarter of the tile)")
    p.add_argument("--blind", action="store_true",
                   help="continuous settings: restore with the model's estimated level, not the true one")
    p.add_argument("--no-save-outputs", dest="save_outputs", action="store_false",
                   help="do not keep the restored test images (outputs/<task>/<image>.png; kept by default)")
    p.add_argument("--efficiency-size", type=int, default=128,
                   help="input side for the measured MACs, latency and memory (default 128; 0: skip)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or a local SQLite store)")
    add_speed_options(p)


@command("evaluate", "score an author-released checkpoint or a folder of restored images (no training; MLflow)",
         _arguments)
def run(args: argparse.Namespace) -> int:
    """Evaluate released weights or restored images, record the run, and print the setting's leaderboard."""
    load_plugins(args.model_file)  # plug-in models are known to the zoo before anything is resolved
    if args.outputs is not None or args.name is not None:
        if args.precision != "fp32" or args.compile:
            raise ValueError("--precision and --compile run a model; --outputs scores restored images: give them "
                             "with --model/--weights")
        return _outputs(args)
    check_precision_option(args.precision, args.gpus)
    if not args.model and not (args.weights or "").startswith(("runs:/", "models:/")):
        raise ValueError("harness evaluate needs --model M --weights FILE (released weights), "
                         "--weights runs:/RUN_ID/model or models:/NAME@ALIAS (a logged model), "
                         "or --outputs DIR --name NAME (restored images)")
    from harness.runs.released import ReleasedRequest, evaluate_released

    request = ReleasedRequest(model=args.model, weights=args.weights, setting=args.setting,
                              public_args=parse_public_args(args.arg), estimator=args.estimator_weights,
                              data_root=args.data_root, metrics=tuple(metric_names(args.metrics)), gpus=args.gpus,
                              tile=args.tile, tile_overlap=args.tile_overlap, blind=args.blind,
                              efficiency_size=args.efficiency_size, save_outputs=args.save_outputs,
                              precision=args.precision, compile=args.compile)
    print_result(evaluate_released(request, args.tracking_uri), args.setting)
    return 0


def _outputs(args: argparse.Namespace) -> int:
    """`--outputs DIR --name NAME`: score a method's restored images and rank them."""
    from harness.runs.outputs import OutputsRequest, evaluate_outputs

    if args.model or args.weights:
        raise ValueError("--outputs scores restored images: give it without --model/--weights")
    if not args.outputs or not args.name:
        raise ValueError("harness evaluate --outputs DIR needs --name NAME (the method's name), and --name needs --outputs")
    request = OutputsRequest(outputs=args.outputs, name=args.name, setting=args.setting, data_root=args.data_root,
                             metrics=tuple(metric_names(args.metrics)), save_outputs=args.save_outputs)
    print_result(evaluate_outputs(request, args.tracking_uri), args.setting)
    return 0
