"""Hand freed heap pages back to the OS after a large decode.

A decode of a big image or clip frees its full-size buffers, but glibc keeps the pages (and
raises its mmap threshold after such frees), so RSS would stay at the peak. malloc_trim(0) costs
well under a millisecond; elsewhere than glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Callable


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name)
    return getattr(libc, "malloc_trim", None)


def trim_heap() -> bool:
    """Return freed heap memory to the OS; False where glibc's malloc_trim is missing."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
