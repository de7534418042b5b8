# PYTHON_ARGCOMPLETE_OK  (argcomplete: this entry point completes itself)
"""The `harness` command line: one module per command, each a thin layer over the library.

A command module registers its run function with `@command` (harness/cli/registry.py) and imports
the library lazily, so that `harness --help` and bad arguments answer without loading torch or Ray.
This package may import every other package; nothing imports it.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys

# Importing a command module registers its command.
from harness.cli import (dashboard, data, evaluate, leaderboard, listing, rescore, restore, score, submit,  # noqa: F401
                         sweep, weights)
from harness.cli import register  # noqa: F401,E402  (harness register: the MLflow Model Registry)
from harness.cli import claims  # noqa: F401,E402  (harness claims: the seed papers' headline claims)
from harness.cli.registry import COMMANDS
from zoo.registry import UnknownNameError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every registered subcommand."""
    parser = argparse.ArgumentParser(prog="harness", description="Train, evaluate and rank image-restoration models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        entry = COMMANDS.get(name)
        p = sub.add_parser(name, help=entry.help)
        entry.configure(p)
        p.set_defaults(func=entry.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `harness` console script; maps errors to exit codes (2 input, 1 failed, 130 stopped)."""
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asking for completions (README: shell completion)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "tracking_uri"):  # a server that does not answer: one line now, before any import or write
            from harness.runs.store import check_answers

            check_answers(args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""))
        return args.func(args)
    except (UnknownNameError, ValueError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from harness.runs.submit import RunFailedError, RunInterruptedError

        if isinstance(err, RunInterruptedError):
            print(f"interrupted: {err}", file=sys.stderr)
            return 130
        if isinstance(err, RunFailedError):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `harness list models | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def console_main() -> int:
    """The `harness` console script: `main`, then an exit that skips the garbage collection of the whole heap.

    At exit CPython collects every object still alive; after a command that loaded torch, MLflow,
    Ray and pandas that took 2.4 s of a smoke submission's 36 (py-spy: `gc_collect_main` after the
    last atexit handler). `gc.freeze` moves what is alive into the generation no collection visits,
    so the process ends at once. atexit handlers still run and stdout is still flushed; objects held
    only by reference cycles are left to the operating system instead of finalised. Not in `main`: a
    test that calls it in its own process keeps collecting its garbage.
    """
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console_main())
