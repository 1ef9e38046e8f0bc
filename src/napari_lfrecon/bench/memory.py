"""Peak resident memory of a block of code, read from Linux ``/proc/self`` (no subprocess needed)."""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
#: What the numbers mean, for the report.
METHOD_PROC = "peak RSS growth: VmHWM after the run minus VmRSS before it, VmHWM reset first (/proc/self/clear_refs)"
METHOD_TRACEMALLOC = "tracemalloc peak (Python/numpy allocations only; torch's allocator is not seen)"


def _status_kib(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _can_reset_peak() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
        return True
    except (OSError, KeyError):
        return False


class PeakMemory:
    """Context manager measuring the peak memory growth (MiB) of the code inside it.

    On Linux the kernel's resident-set high-water mark is reset on entry and
    read on exit, so every allocation counts (numpy, torch, FFT plans),
    including memory freed before the block ends. Elsewhere it falls back to
    ``tracemalloc``. :attr:`method` says which one was used. Memory the
    allocators kept from earlier runs and reuse is not counted as growth.
    """

    def __init__(self) -> None:
        self.use_proc = _can_reset_peak()
        self.method = METHOD_PROC if self.use_proc else METHOD_TRACEMALLOC
        self.peak_mib = float("nan")
        self._before = 0

    def __enter__(self) -> PeakMemory:
        if self.use_proc:
            _CLEAR_REFS.write_text("5")
            self._before = _status_kib("VmRSS")
        else:
            tracemalloc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.use_proc:
            self.peak_mib = max(_status_kib("VmHWM") - self._before, 0) / 1024.0
        else:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            self.peak_mib = peak / 2**20
