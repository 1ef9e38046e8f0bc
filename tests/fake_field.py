"""A fake niiv field shared by the niiv-zoom tests: a smooth analytic function of output-voxel coordinates."""

from __future__ import annotations

import threading
import time

import numpy as np


class FakeField:
    """An analytic 'field' on output-voxel coordinates: detail at 1.3 cycles per voxel along y."""

    def __init__(self, shape=(24, 256, 300), delay: float = 0.0, stubborn: bool = False, fail: str = ""):
        self.shape_out = shape
        self.delay = delay
        self.stubborn = stubborn  # ignores should_stop: its late results must be dropped as stale
        self.fail = fail
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.stopped = 0
        self.lock = threading.Lock()

    @staticmethod
    def value(z, y, x):
        return np.cos(2 * np.pi * (0.05 * x + 0.02 * z)) + 0.5 * np.cos(2 * np.pi * 1.3 * y)

    def decode_grid(self, zs, ys, xs, *, should_stop=None):
        with self.lock:
            self.calls.append((np.array(zs), np.array(ys), np.array(xs)))
        if self.fail:
            raise RuntimeError(self.fail)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.delay:
            if not self.stubborn and should_stop is not None and should_stop():
                self.stopped += 1
                return None
            time.sleep(0.002)
        z, y, x = np.meshgrid(zs, ys, xs, indexing="ij")
        return self.value(z, y, x).astype(np.float32)
