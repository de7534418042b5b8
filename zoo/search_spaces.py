"""Default hyperparameter search spaces per model, as plain data (no Ray here).

`harness sweep` turns these into Ray Tune sampling objects (harness/runs/sweep.py). A key is either a
training-profile field (`lr`, `weight_decay`) or `model.<option>` for a field of the model's
configuration dataclass (dotted for nested fields, e.g. `model.host.width`), exactly the names
`harness submit --option` accepts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zoo.registry import Registry

KINDS = ("loguniform", "uniform", "randint", "choice", "grid")


@dataclass(frozen=True)
class Dimension:
    """One axis of a search space.

    `kind` is one of KINDS: `loguniform`/`uniform` sample a float in [low, high], `randint` an
    integer in [low, high), `choice` one of `values` at random, `grid` every one of `values`
    (a grid axis multiplies the number of trials).
    """

    kind: str
    values: tuple[Any, ...]
    source: str = ""  # where the range comes from

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown search-space kind '{self.kind}'; valid kinds: {', '.join(KINDS)}")
        if self.kind in ("loguniform", "uniform", "randint"):
            if len(self.values) != 2:
                raise ValueError(f"a {self.kind} dimension needs exactly two bounds (low, high), got {list(self.values)}")
            low, high = self.values
            if not low < high:
                raise ValueError(f"a {self.kind} dimension needs low < high, got {list(self.values)}")
            if self.kind == "loguniform" and low <= 0:
                raise ValueError(f"a loguniform dimension needs positive bounds, got {list(self.values)}")
        elif not self.values:
            raise ValueError(f"a {self.kind} dimension needs at least one value")


SearchSpace = dict[str, Dimension]
SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")

# AdamW learning rates around the profiles' 1e-3 / 5e-4 (harness/runs/profiles.py); HAIR Sec. 4.1
# trains at 2e-4 and NAFNet's GoPro recipe at 1e-3, so the range covers both papers' choices.
LEARNING_RATE = Dimension("loguniform", (1e-4, 3e-3), "HAIR Sec. 4.1 (2e-4), NAFNet GoPro (1e-3)")


def default_space(model: str) -> SearchSpace:
    """The registered space of `model`, else the learning rate alone."""
    return dict(SEARCH_SPACES.get(model)) if model in SEARCH_SPACES else {"lr": LEARNING_RATE}


SEARCH_SPACES.add("nafnet", {
    "lr": LEARNING_RATE,
    "model.width": Dimension("choice", (8, 16, 24), "tiny variant width 16 (zoo/nafnet.py) halved / x1.5"),
})
SEARCH_SPACES.add("res_hair", {
    "lr": LEARNING_RATE,
    # Weight Box sizes N per level: the tiny (3,3,3,3) and the paper's (5,7,7,9), HAIR Sec. 4.1 and Tab. 7.
    "model.candidates": Dimension("choice", ((3, 3, 3, 3), (3, 5, 5, 7), (5, 7, 7, 9)), "HAIR Sec. 4.1, Tab. 7"),
})
SEARCH_SPACES.add("nafnet_hair", {
    "lr": LEARNING_RATE,
    "model.candidates": Dimension("choice", ((3, 3, 3, 3), (5, 5, 5, 5)), "HAIR Sec. 4.1 box sizes"),
})
SEARCH_SPACES.add("identity", {})  # nothing to train: a sweep of it measures the harness alone
