"""Device choice at the edge of the program: CUDA, then Apple MPS, then CPU. Lower code follows ``tensor.device``."""

from __future__ import annotations

from typing import Any

from gan_zoo.errors import ConfigError

__all__ = ["device_of", "native_bfloat16", "resolve_device"]

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute in bfloat16 natively


def resolve_device(name: str | None = "auto"):
    """Return a ``torch.device`` for ``name``: ``"auto"``/``None`` picks CUDA, then MPS, then CPU.

    Raises:
        ConfigError: an explicit device that this machine does not have (e.g. ``"cuda"`` without a GPU).
    """
    import torch

    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f'unknown device "{name}"; expected auto, cpu, cuda, cuda:N or mps') from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f'device "{name}" asked for, but torch sees no CUDA GPU here; use --device auto or cpu')
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f'device "{name}" asked for, but MPS is not available here; use --device auto or cpu')
    return device


def device_of(module: Any):
    """The device of ``module``'s first parameter, else of its first buffer; CPU for anything without either."""
    import itertools

    import torch

    if hasattr(module, "parameters") and hasattr(module, "buffers"):
        for t in itertools.chain(module.parameters(), module.buffers()):
            return t.device
    return torch.device("cpu")


def native_bfloat16(device: Any) -> bool:
    """Whether bfloat16 autocast pays on ``device``: any CUDA device; a CPU whose flags name native bfloat16
    arithmetic (x86 AVX512-BF16 or AMX, read from ``/proc/cpuinfo``; elsewhere False: without it torch emulates
    bfloat16 and autocast is slower than float32); never MPS."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in BF16_CPU_FLAGS)
    except OSError:
        pass
    return False
