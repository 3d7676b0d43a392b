"""Run the engine's numerics on one thread.

The engine's matrices are a few hundred rows. Threads only add synchronisation, which
on a busy machine (a control worker beside trial workers, parallel benchmark runs) costs
up to ten times the arithmetic, and a fixed thread count makes floating-point reductions,
hence suggestions, the same on every host. Both pools are limited: the BLAS behind
numpy/scipy (through ``threadpoolctl``, already a BoTorch dependency) and torch's
intra-op pool; the caller's settings are restored on exit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _controller().limit(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)
