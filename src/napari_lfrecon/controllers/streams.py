"""Computations that report through a callback, turned into generators the GUI's worker layer runs.

:func:`napari_lfrecon.gui.worker.start_job` hands each value a generator
yields to the main thread. Library functions such as
:func:`~napari_lfrecon.psf.lfm.lfm_psf` and :func:`~napari_lfrecon.batch.run_batch`
report progress through a callback instead; :func:`stream_callbacks` runs such
a function in a helper thread and yields what it reports, in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

Result = TypeVar("Result")

#: Marks the end of a computation's reports in the queue.
_DONE = object()


def stream_callbacks(compute: Callable[[Callable[..., None]], Result]) -> Generator[tuple[Any, ...], None, Result]:
    """Run ``compute(report)`` in a helper thread; yield each ``report(*args)`` as a tuple; return its result.

    An exception raised by ``compute`` is raised again here, after the reports
    made before it, so the worker layer reports it like any other error.
    """
    reports: queue.Queue[Any] = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = compute(lambda *args: reports.put(args))
        except BaseException as exc:  # re-raised by the generator, on the worker thread
            outcome["error"] = exc
        finally:
            reports.put(_DONE)

    helper = threading.Thread(target=run, name="lfrecon-callbacks", daemon=True)
    helper.start()
    while (report := reports.get()) is not _DONE:
        yield report
    helper.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
