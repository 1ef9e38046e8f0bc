"""PSF models and the PSF object (no Qt)."""

from .model import MODALITIES, PSF, PSF_FILE_SUFFIX

__all__ = ["MODALITIES", "PSF", "PSF_FILE_SUFFIX"]
