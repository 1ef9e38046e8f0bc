"""The result type every engine returns through the scripting API (defined in :mod:`napari_lfrecon.jobs`)."""

from .jobs.protocol import Volume

__all__ = ["Volume"]
