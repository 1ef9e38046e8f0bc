"""Quality metrics (no Qt)."""

from .basic import psnr

__all__ = ["psnr"]
