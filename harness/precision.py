"""Numeric precision and compilation of a run: autocast, fp16 gradient scaling, torch.compile with an eager fallback.

`--precision fp32|bf16|fp16` picks an entry of PRECISIONS; fp32 runs exactly as before (no
autocast, no scaler), so fp32 results stay bit-identical. Metrics never see reduced precision:
the outputs are cast back to float32 before they are rounded and scored. `--compile` compiles
the model's forward in place for the duration of training or evaluation (`compiled`); a model
that fails to compile runs eager and the reason is kept for the run's tags.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
from torch import Tensor, nn

from zoo.registry import Registry


@dataclass(frozen=True)
class Precision:
    """One training/evaluation precision: the autocast dtype (None: plain float32) and whether gradients are scaled."""

    name: str
    description: str
    dtype: torch.dtype | None
    scales_gradients: bool = False


PRECISIONS: Registry[Precision] = Registry("precision")
for _precision in (
    Precision("fp32", "float32 throughout (the default; bit-identical to earlier runs)", None),
    Precision("bf16", "autocast to bfloat16 (CPU, and CUDA GPUs that support it: Ampere or newer)", torch.bfloat16),
    # float16's 5-bit exponent underflows small gradients: the loss is scaled up before backward and the
    # gradients unscaled before the step, which is skipped when they overflow (PyTorch AMP docs, torch.amp.GradScaler)
    Precision("fp16", "autocast to float16 with gradient scaling (CUDA only)", torch.float16, scales_gradients=True),
):
    PRECISIONS.add(_precision.name, _precision)


def device_type(device: torch.device | str) -> str:
    """'cuda' or 'cpu' (the autocast device type) of `device`."""
    return torch.device(device).type


def check_precision(name: str, device: torch.device | str) -> Precision:
    """The precision `name`, or ValueError in one line when `device` cannot run it (fp16 on CPU, bf16 on an old GPU)."""
    precision = PRECISIONS.get(name)
    kind = device_type(device)
    if name == "fp16" and kind != "cuda":
        raise ValueError("--precision fp16 needs a CUDA GPU (float16 autocast and gradient scaling are GPU features); "
                         f"this run is on {kind}: use --precision bf16 or fp32")
    # a GPU of a remote cluster is not visible here; the trial checks again on the device it gets
    if name == "bf16" and kind == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--precision bf16: the GPU {torch.cuda.get_device_name()} has no bfloat16 support; "
                         "use --precision fp16 or fp32")
    return precision


def autocast(precision: Precision, device: torch.device | str) -> ContextManager:
    """Autocast to the precision's dtype on `device`'s type; a no-op for fp32."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type(device), dtype=precision.dtype)


class GradientScaler:
    """`backward(loss)` and `step(optimizer)` with fp16 loss scaling, or plain backward and step for the rest.

    With scaling, `step` returns False when the gradients overflowed: the optimiser step is skipped
    and the scale lowered (torch.amp.GradScaler's rule), so one overflow does not ruin the weights.
    """

    def __init__(self, precision: Precision, device: torch.device | str):
        self.scaler = torch.amp.GradScaler(device_type(device)) if precision.scales_gradients else None

    def backward(self, loss: Tensor) -> None:
        """Backward of `loss` (scaled first when gradients are scaled)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Take the optimiser step; False when fp16 gradients overflowed and the step was skipped."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # update() lowers the scale only after a skipped step


@dataclass
class Compiler:
    """Whether a run compiles its model, and why compilation fell back to eager (None while it has not)."""

    enabled: bool = False
    fallback: str | None = None
    backend: str | Callable = "inductor"  # torch.compile's default backend (a callable one in the tests)

    @property
    def active(self) -> bool:
        """True while the compiled forward is in use."""
        return self.enabled and self.fallback is None


@contextlib.contextmanager
def compiled(model: nn.Module, compiler: Compiler,
             passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[Callable[[Callable[[], object]], object]]:
    """Within the block, `model`'s forward is compiled in place (nn.Module.compile); yields a `guard(fn)`.

    `guard(fn)` runs `fn()`; when the compiled forward fails the first time it is used, the model
    goes back to eager, one line says why, `compiler.fallback` keeps the reason and `fn()` runs again
    eagerly; errors of the `passthrough` types (the run's own, such as a non-finite loss) are raised
    as they are. After the block the model is eager again, so saving and logging it see a plain module.
    """
    if not compiler.active:
        yield lambda fn: fn()
        return
    model.compile(backend=compiler.backend)
    state = {"proven": False}

    def guard(fn: Callable[[], object]) -> object:
        if state["proven"] or not compiler.active:
            return fn()
        try:
            out = fn()
        except passthrough:
            raise
        except Exception as err:  # any compiler error: Dynamo, Inductor, a missing C compiler, an unsupported op
            reason = " ".join(str(err).split())[:300] or type(err).__name__
            compiler.fallback = f"{type(err).__name__}: {reason}"
            model.__dict__.pop("_compiled_call_impl", None)  # what nn.Module.compile set: the module is eager again
            print(f"[compile] {type(model).__name__} did not compile, running eager: {compiler.fallback}", flush=True)
            return fn()
        state["proven"] = True
        return out

    try:
        yield guard
    finally:
        model.__dict__.pop("_compiled_call_impl", None)
