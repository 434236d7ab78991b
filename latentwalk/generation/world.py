"""The torchrun process group of a sharded ``generate``: join it, run phases that every rank agrees on."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from latentwalk.errors import ConfigError, DistributedError, LatentwalkError

__all__ = ["DIST_TIMEOUT_ENV", "World", "world", "dist_timeout"]


@dataclass(frozen=True)
class World:
    """This process's rank, the number of ranks and its local rank (one process: 0, 1, 0)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Run one phase on every rank, then agree on its outcome: when any rank failed, every rank stops with an
        error naming that rank and its message (the failed rank raises its own error), instead of the others
        waiting at the next collective. Also a barrier."""
        if self.size <= 1:
            yield
            return
        import torch.distributed as dist

        error: BaseException | None = None
        try:
            yield
        except Exception as e:  # reported to every rank below, then raised again here
            error = e
        message = None if error is None else (str(error) if isinstance(error, LatentwalkError) else repr(error))
        statuses: list[str | None] = [None] * self.size
        dist.all_gather_object(statuses, message)
        if error is not None:
            raise error
        failed = [(rank, msg) for rank, msg in enumerate(statuses) if msg is not None]
        if failed:
            rank, msg = failed[0]
            raise DistributedError(f"rank {rank} failed during {name}, so every rank stopped: {msg}")


DIST_TIMEOUT_ENV = "LATENTWALK_DIST_TIMEOUT"  # seconds a rank waits for the others at a collective (default 1800)


def dist_timeout() -> float:
    """Seconds a rank waits at a collective (``LATENTWALK_DIST_TIMEOUT``, default 1800)."""
    text = os.environ.get(DIST_TIMEOUT_ENV, "1800")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{DIST_TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return value


@contextlib.contextmanager
def world(device_name: str) -> Iterator[World]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    created = not dist.is_initialized()
    if created:
        if cuda:
            torch.cuda.set_device(local)
        timeout = datetime.timedelta(seconds=dist_timeout())
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timeout)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local)
    finally:
        if created:
            dist.destroy_process_group()
