"""glibc malloc settings that keep the aggregator's memory flat, round after round.

Elsewhere than glibc every function here does nothing.
"""

from __future__ import annotations

import ctypes
import functools

from crucible.telemetry import logger

log = logger("aggregator")

M_ARENA_MAX = -8  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - present in glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before the worker threads start.

    By default glibc gives threads up to eight arenas per core, and each keeps the
    memory its thread freed. With hundreds of gRPC threads passing megabyte chunks,
    that retained memory grew with the number of participants (about six models' worth
    at 50 participants); two arenas keep the peak flat. A fixed mmap threshold of 1 MiB
    also stops glibc from raising it after large frees, so tensor buffers are always
    mapped and given back to the system when freed, round after round.
    """
    libc = _libc()
    if libc is None:
        log.debug("malloc_arenas_unchanged", why="not glibc")
        return
    libc.mallopt(M_ARENA_MAX, arenas)
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def return_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's malloc_trim).

    Called before each aggregation, the memory-hungriest step of a round: pages freed
    while updates arrived would otherwise stay resident under it, and more of them the
    more participants sent.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
