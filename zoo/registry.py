"""Name -> factory registries with helpful errors; shared by the zoo and the harness."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(LookupError):
    """Raised when a registry is asked for a name it does not hold; the message lists valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        super().__init__(f"unknown {kind} '{name}'.{hint} Valid {kind}s: {', '.join(valid)}")

    def __str__(self) -> str:  # LookupError would otherwise quote the message
        return self.args[0]

    def __reduce__(self):  # copy and pickle (Ray copies a trial's error) call __init__ with these arguments
        return type(self), (self.kind, self.name, self.valid)


class Registry(Generic[T]):
    """A named collection filled by a decorator (the timm pattern)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the object under `name` (default: its __name__)."""

        def wrap(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._items:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._items[key] = obj
            return obj

        return wrap

    def add(self, name: str, obj: T) -> None:
        """Register an object that is not a decorated definition (e.g. loaded from a file)."""
        self.register(name)(obj)

    def get(self, name: str) -> T:
        """Return the entry for `name` or raise UnknownNameError listing the valid names."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names()) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
