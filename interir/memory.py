"""Keep the forward's freed memory in the process instead of handing it back to the OS (glibc).

A 512² forward allocates and frees feature maps of 3–13 MB hundreds of times. glibc serves
blocks above its mmap threshold (128 KB, raised dynamically) with fresh ``mmap`` pages and trims
the heap's free top once it exceeds the trim threshold, so the same pages are faulted in and
zeroed again on every forward. Raising both thresholds keeps them: the forward of the n = 6
model at 512² on 2 threads took 1.93 s median instead of 2.23 s on the 2-core development machine
(three alternating runs of five, same peak RSS; ``benchmarks/README.md``). No-op off glibc.
"""
from __future__ import annotations

from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: glibc caps the mmap threshold at 32 MiB on 64-bit (a larger value is refused); blocks above
#: it (a 1024² input's largest maps) are still mmapped.
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top is given back only above this (the default is 128 KB).
TRIM_THRESHOLD = 512 << 20

_LIBC: Any = None


def libc() -> Any:
    """glibc through ctypes, or ``False`` where there is none (macOS, Windows, musl)."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim  # noqa: B018 - glibc only
            _LIBC.mallopt  # noqa: B018
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (see the module docstring); True if both took."""
    c = libc()
    if not c:
        return False
    return bool(c.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
        c.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def limit_arenas(arenas: int) -> bool:
    """At most ``arenas`` glibc malloc arenas; True if it took."""
    c = libc()
    return bool(c) and bool(c.mallopt(M_ARENA_MAX, int(arenas)))


def trim() -> None:
    """Give freed heap memory back to the OS (``malloc_trim``); no-op off glibc."""
    c = libc()
    if c:
        c.malloc_trim(0)
