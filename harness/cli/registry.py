"""The registry of `harness` commands: each command module registers its run function here."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from zoo.registry import Registry

RunFn = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how it adds its arguments, and what it runs."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: RunFn


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]) -> Callable[[RunFn], RunFn]:
    """Decorator: register the decorated function as the body of `harness <name>`."""

    def wrap(run: RunFn) -> RunFn:
        COMMANDS.add(name, Command(name, help, configure, run))
        return run

    return wrap


def complete(action: argparse.Action, names: Callable[..., list[str]]) -> argparse.Action:
    """Give an argument shell completion (argcomplete calls `names` when the user presses Tab)."""
    action.completer = names  # type: ignore[attr-defined]  # argcomplete's documented attribute
    return action
