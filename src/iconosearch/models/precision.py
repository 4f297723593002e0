"""Mixed precision: the one place that turns a precision name into a torch autocast context."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def autocast_dtype(device: str, precision: str) -> torch.dtype | None:
    """The reduced dtype for ``precision`` on ``device``; None means full fp32.

    ``auto`` picks bf16 on a GPU that supports it, fp16 on other GPUs, and fp32 on CPU (CPU autocast is
    slower than fp32 for these small models); explicit bf16/fp16 are honoured on any device.
    """
    import torch

    cuda = device.startswith("cuda")
    if precision == "fp32" or (precision == "auto" and not cuda):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def autocast(device: str, precision: str) -> AbstractContextManager[Any]:
    """A context that runs the enclosed forward passes at ``precision`` (see :func:`autocast_dtype`)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return nullcontext()
    import torch

    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)
