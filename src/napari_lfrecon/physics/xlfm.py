"""XLFM forward operator: volume → raw sensor frame, and the sensor frame → views.

``raw = Σ_z vol[z] ⊛ H[z]``, a *linear* (not circular) 2D convolution per depth
summed over depth, evaluated on the sensor grid. The volume is centred on the
sensor: volume voxel ``(Y//2, X//2)`` sits on the optical axis, sensor pixel
``(H//2, W//2)``, which is also the origin of every kernel ``H[z]`` (the PSF
centre convention). With ``f = vol[z] * H[z]`` the full linear convolution
(size ``Y+H-1``), the raw frame is ``f[Y//2 : Y//2+H, X//2 : X//2+W]``.

The FFT length per axis is the smallest 2·3·5-smooth
``L ≥ H + max(Y//2, Y - 1 - Y//2)``: the kept window fits (``Y//2 + H ≤ L``)
and the circular wrap of the full convolution lands only on rows ``< Y//2``,
outside that window, so the result equals the linear convolution exactly (the
same bound makes the correlation in the adjoint exact). This is about
``H + Y/2`` instead of the ``H + Y - 1`` of a fully padded convolution.

Memory: the kernel spectra are precomputed once per (device, dtype) and take
``D · Ly · (Lx//2 + 1)`` complex numbers — for the shipped-sample size
(D = 17, sensor 384², volume 64²) that is 17 · 432 · 217 · 8 B ≈ 12.7 MB in
complex64 (double that in float64). Work buffers of the same size per batch
item and depth chunk are made during a call; pass ``depth_chunk`` to bound them.

Field stop (``field_stop=True``): each lenslet's sub-image is limited to its
view window ``W_k``, so light of a point near the volume edge that lands, via
lenslet ``k``'s PSF lobe, outside ``W_k`` is blocked instead of leaking into a
neighbouring view. With ``H_k = H ⊙ W_k`` (the PSF is truncated to the view
windows, so ``H = Σ_k H_k`` for non-overlapping windows) the model is
``raw = Σ_k W_k ⊙ (x ⊛ H_k)``. Restricted to window ``k`` this is the same
centred linear convolution as above with the sensor replaced by the window and
the kernel by ``g_k = crop_k(H)``: ``view_k = (x ⊛ g_k)[o : o + (h, w)]``
with ``o = (Y//2, X//2)``, so the same FFT-length bound (with ``h, w`` in place
of the sensor) makes it exact. The kernel spectra are then ``N · D`` small
ones (``N · D · Ly · (Lx//2+1)`` complex numbers, 27 · 16 · 90 · 46 · 8 B
≈ 14.3 MB for the shipped sample, 56² views and volume) and pixels outside every window read 0.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import LinearOperator
from .fft_util import next_fast_len

#: Prime factors allowed in the FFT lengths: 2·3·5-smooth, as measured when this operator was tuned.
_FFT_PRIMES = (2, 3, 5)


def view_windows(centres: np.ndarray, view_size: tuple[int, int]) -> np.ndarray:
    """Top-left sensor pixel ``(N, 2)`` of each view window: ``round(c_k) - view_size // 2``."""
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2 or len(centres) == 0 or not np.all(np.isfinite(centres)):
        raise ValueError(f"centres must be a finite (N, 2) array of (y, x) positions, got shape {centres.shape}")
    half = np.array([view_size[0] // 2, view_size[1] // 2])
    return np.round(centres).astype(np.int64) - half


def windows_overlap(centres: np.ndarray, view_size: tuple[int, int]) -> bool:
    """Whether any two view windows share a sensor pixel."""
    corners = view_windows(centres, view_size)
    dy = np.abs(corners[:, None, 0] - corners[None, :, 0])
    dx = np.abs(corners[:, None, 1] - corners[None, :, 1])
    clash = (dy < view_size[0]) & (dx < view_size[1])
    np.fill_diagonal(clash, False)
    return bool(clash.any())


class XLFMProjector(LinearOperator):
    """Fourier light-field forward model ``A``: ``(B, D, Y, X)`` volume → ``(B, H, W)`` raw frame.

    Parameters
    ----------
    psf_z:
        ``(D, H, W)`` sensor image of an on-axis point per depth (the array of
        an ``"xlfm"`` :class:`~napari_lfrecon.psf.model.PSF`), origin at
        ``(H//2, W//2)``.
    centres:
        ``(N, 2)`` view centres ``(row, col)`` on the sensor, in pixels. View
        windows start at ``round(c_k) - view_size // 2`` and must lie on the sensor.
    view_size:
        ``(h, w)`` of each view.
    volume_shape:
        ``(D, Y, X)`` of the volumes this operator maps from; ``D`` must equal
        the PSF's depth count.
    depth_chunk:
        Depths processed together per FFT batch (``None`` = all); smaller
        values trade speed for working memory.
    field_stop:
        Model each lenslet's field stop (see the module docstring): lenslet
        ``k`` only lights view window ``k``. Needs non-overlapping windows.
        ``False`` keeps the shift-invariant sensor-wide model.

    The module works on whatever device/dtype its input has (float32 or
    float64); the kernel spectrum for a new device/dtype is computed once and
    cached. ``forward``/``adjoint`` and ``views``/``views_adjoint`` are exact
    adjoint pairs.
    """

    def __init__(
        self,
        psf_z: torch.Tensor | np.ndarray,
        centres: torch.Tensor | np.ndarray,
        view_size: tuple[int, int],
        volume_shape: tuple[int, int, int],
        *,
        depth_chunk: int | None = None,
        field_stop: bool = False,
    ) -> None:
        super().__init__()
        psf = torch.as_tensor(np.asarray(psf_z) if isinstance(psf_z, np.ndarray) else psf_z)
        if psf.ndim != 3 or not psf.is_floating_point():
            raise ValueError(f"psf_z must be a real (D, H, W) array, got shape {tuple(psf.shape)} dtype {psf.dtype}")
        if not torch.all(torch.isfinite(psf)):
            raise ValueError("psf_z contains NaN or Inf values")
        shape = tuple(int(v) for v in volume_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"volume_shape must be (D, Y, X) positive integers, got {volume_shape!r}")
        if shape[0] != psf.shape[0]:
            raise ValueError(f"volume_shape has {shape[0]} depths but psf_z has {psf.shape[0]}")
        view = tuple(int(v) for v in view_size)
        if len(view) != 2 or min(view) < 1:
            raise ValueError(f"view_size must be (h, w) positive integers, got {view_size!r}")
        centres_np = np.asarray(centres.detach().cpu() if isinstance(centres, torch.Tensor) else centres, float)
        if centres_np.ndim != 2 or centres_np.shape[1] != 2 or len(centres_np) == 0:
            raise ValueError(f"centres must be an (N, 2) array of (row, col) pixels, got shape {centres_np.shape}")
        sensor = (int(psf.shape[1]), int(psf.shape[2]))
        corners = view_windows(centres_np, view)  # type: ignore[arg-type]
        if corners.min() < 0 or np.any(corners + np.array(view) > np.array(sensor)):
            raise ValueError(f"every view window of size {view} around the centres must lie on the {sensor} sensor")
        if depth_chunk is not None and int(depth_chunk) < 1:
            raise ValueError(f"depth_chunk must be a positive integer or None, got {depth_chunk!r}")

        self.volume_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.sensor_shape: tuple[int, int] = sensor
        self.view_size: tuple[int, int] = view  # type: ignore[assignment]
        self.depth_chunk = int(depth_chunk) if depth_chunk is not None else shape[0]
        self.views_overlap = windows_overlap(centres_np, view)  # type: ignore[arg-type]
        if field_stop and self.views_overlap:
            raise ValueError("a field stop per lenslet needs non-overlapping view windows")
        self.field_stop = bool(field_stop)
        # FFT length per axis (of the sensor, or of one view window under a field stop):
        # see the module docstring for why this bound is exact.
        image = view if self.field_stop else sensor
        self.fft_shape: tuple[int, int] = tuple(  # type: ignore[assignment]
            next_fast_len(image[a] + max(shape[1 + a] // 2, shape[1 + a] - 1 - shape[1 + a] // 2), _FFT_PRIMES)
            for a in range(2)
        )
        self.register_buffer("psf", psf.clone())
        self.register_buffer("centres", torch.as_tensor(centres_np, dtype=torch.float64))
        rows = torch.as_tensor(corners[:, 0:1]) + torch.arange(view[0])[None]  # (N, h)
        cols = torch.as_tensor(corners[:, 1:2]) + torch.arange(view[1])[None]  # (N, w)
        self.register_buffer("view_index", (rows[:, :, None] * sensor[1] + cols[:, None, :]).reshape(-1))
        self._spectra: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._spectrum(psf.device, psf.dtype)

    @property
    def data_shape(self) -> tuple[int, int]:  # type: ignore[override]
        """The raw sensor frame's shape ``(H, W)`` (the operator base's name for ``sensor_shape``)."""
        return self.sensor_shape

    @property
    def n_views(self) -> int:
        """Number of views (lenslets)."""
        return int(self.centres.shape[0])

    def memory_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Size in bytes of the precomputed kernel spectra for ``dtype`` inputs."""
        complex_bytes = 8 if dtype == torch.float32 else 16
        kernels = self.volume_shape[0] * (self.n_views if self.field_stop else 1)
        return kernels * self.fft_shape[0] * (self.fft_shape[1] // 2 + 1) * complex_bytes

    def _spectrum(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Kernel spectra for ``device``/``dtype``, computed once and cached.

        ``(D, Ly, Lx//2+1)`` of the sensor-wide PSF, or under a field stop
        ``(D, N, Ly, Lx//2+1)`` of each view window's crop of it (lenslet ``k``'s kernel).
        """
        key = (torch.device(device), dtype)
        if key not in self._spectra:
            # A constant of the operator: no graph, and a normal tensor even when the first
            # call happens under inference_mode (so later autograd calls can use it).
            with torch.inference_mode(False), torch.no_grad():
                kernel = self.psf.to(device=device, dtype=dtype)
                if self.field_stop:
                    depth = kernel.shape[0]
                    flat = kernel.reshape(depth, -1)[:, self.view_index.to(device)]
                    kernel = flat.reshape(depth, self.n_views, *self.view_size)
                self._spectra[key] = torch.fft.rfft2(kernel, s=self.fft_shape)
        return self._spectra[key]

    def _check(self, x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        if x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")

    def forward(self, vol: torch.Tensor) -> torch.Tensor:
        """Raw sensor frame ``(B, H, W)`` of a volume ``(B, D, Y, X)``."""
        if self.field_stop:
            return self.views_adjoint(self.forward_views(vol))
        self._check(vol, self.volume_shape, "the volume")
        spectra = self._spectrum(vol.device, vol.dtype)
        _, y, x = self.volume_shape
        acc = None
        for start in range(0, self.volume_shape[0], self.depth_chunk):
            stop = start + self.depth_chunk
            part = torch.fft.rfft2(vol[:, start:stop], s=self.fft_shape) * spectra[start:stop]
            part = part.sum(dim=1)
            acc = part if acc is None else acc + part
        full = torch.fft.irfft2(acc, s=self.fft_shape)
        return full[:, y // 2 : y // 2 + self.sensor_shape[0], x // 2 : x // 2 + self.sensor_shape[1]]

    def adjoint(self, raw: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`forward`: ``(B, H, W)`` → ``(B, D, Y, X)`` (a correlation with each ``H[z]``)."""
        if self.field_stop:
            return self.adjoint_views(self.views(raw))
        self._check(raw, self.sensor_shape, "the raw frame")
        spectra = self._spectrum(raw.device, raw.dtype)
        _, y, x = self.volume_shape
        height, width = self.sensor_shape
        # Place the frame where forward cropped it from the full convolution.
        padded = raw.new_zeros((raw.shape[0], *self.fft_shape))
        padded[:, y // 2 : y // 2 + height, x // 2 : x // 2 + width] = raw
        raw_spectrum = torch.fft.rfft2(padded)[:, None]
        out = []
        for start in range(0, self.volume_shape[0], self.depth_chunk):
            stop = start + self.depth_chunk
            corr = torch.fft.irfft2(raw_spectrum * spectra[start:stop].conj(), s=self.fft_shape)
            out.append(corr[..., :y, :x])
        return torch.cat(out, dim=1)

    def views(self, raw: torch.Tensor) -> torch.Tensor:
        """Crop the views ``(B, N, h, w)`` out of raw frames ``(B, H, W)``."""
        self._check(raw, self.sensor_shape, "the raw frame")
        flat = raw.reshape(raw.shape[0], -1)
        return flat[:, self.view_index].reshape(raw.shape[0], self.n_views, *self.view_size)

    def views_adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`views`: scatter-add views ``(B, N, h, w)`` into zero frames ``(B, H, W)``."""
        self._check(views, (self.n_views, *self.view_size), "the views")
        out = views.new_zeros((views.shape[0], self.sensor_shape[0] * self.sensor_shape[1]))
        out.index_add_(1, self.view_index, views.reshape(views.shape[0], -1))
        return out.reshape(views.shape[0], *self.sensor_shape)

    def forward_views(self, vol: torch.Tensor) -> torch.Tensor:
        """Views ``(B, N, h, w)`` of a volume: ``views(forward(vol))``."""
        if not self.field_stop:
            return self.views(self.forward(vol))
        self._check(vol, self.volume_shape, "the volume")
        spectra = self._spectrum(vol.device, vol.dtype)  # (D, N, Ly, Lx//2+1)
        _, y, x = self.volume_shape
        acc = None
        for start in range(0, self.volume_shape[0], self.depth_chunk):
            stop = start + self.depth_chunk
            vol_spectrum = torch.fft.rfft2(vol[:, start:stop], s=self.fft_shape)  # (B, d, Ly, Lx')
            part = torch.einsum("bdyx,dnyx->bnyx", vol_spectrum, spectra[start:stop])
            acc = part if acc is None else acc + part
        full = torch.fft.irfft2(acc, s=self.fft_shape)
        return full[:, :, y // 2 : y // 2 + self.view_size[0], x // 2 : x // 2 + self.view_size[1]]

    def adjoint_views(self, views: torch.Tensor) -> torch.Tensor:
        """Transpose of :meth:`forward_views`."""
        if not self.field_stop:
            return self.adjoint(self.views_adjoint(views))
        self._check(views, (self.n_views, *self.view_size), "the views")
        spectra = self._spectrum(views.device, views.dtype)
        _, y, x = self.volume_shape
        height, width = self.view_size
        # Place each view where forward_views cropped it from its window's full convolution.
        padded = views.new_zeros((views.shape[0], self.n_views, *self.fft_shape))
        padded[:, :, y // 2 : y // 2 + height, x // 2 : x // 2 + width] = views
        views_spectrum = torch.fft.rfft2(padded)  # (B, N, Ly, Lx')
        out = []
        for start in range(0, self.volume_shape[0], self.depth_chunk):
            stop = start + self.depth_chunk
            part = torch.einsum("bnyx,dnyx->bdyx", views_spectrum, spectra[start:stop].conj())
            out.append(torch.fft.irfft2(part, s=self.fft_shape)[..., :y, :x])
        return torch.cat(out, dim=1)
