"""The light-field forward operator in phase space: one 2D kernel per angular view and depth.

``views[b, a, j] = Σ_z Σ_x vol[b, z, x] · H[a, z][c + s·j + s//2 - x]``

with ``c = (h // 2, w // 2)`` the kernel centre, ``s`` the supersampling (volume
voxels per lenslet) and lenslet ``j`` sitting over voxel ``s·j + s//2`` (the
convention of :mod:`napari_lfrecon.psf.lfm`). In words: convolve each depth with
the view's kernel on the volume grid, sum over depth, sample at the lenslet
centres.

Boundary: linear (zero padding). The volume is zero outside its box and the
FFT grid is padded by the kernel's half-width, so an object near one edge never
wraps around to the other; light from outside the volume box is not modelled.

Implementation: every depth of the volume is FFT'd once (real FFTs) and
reused for every angle. Per frequency, the sum over depths is one batched
matrix product ``(a × s·D) @ (s·D × B)``. Sampling every s-th row is done in
Fourier space by folding (summing the s aliases ``ky = my + l·Qy``), which is
folded into the same matrix product by making ``(l, depth)`` the contracted
axis; so each angle needs only an inverse FFT of ``Qy × Px`` (not ``Py × Px``),
then every s-th column is taken. The adjoint is the exact transpose: views
zero-inserted along x, a ``Qy × Px`` FFT per angle (its y-periodic repeat is
implicit), one matmul, one full-size inverse FFT per depth. Kernel spectra are
precomputed when all ``A × D`` of them fit in ``max_spectra_bytes``; otherwise
they are computed on the fly for chunks of angles at each call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import LinearOperator
from .fft_util import next_fast_len

#: Fraction of ``max_spectra_bytes`` one on-the-fly chunk of angles may use.
_CHUNK_FRACTION = 0.5


def _fft_len_multiple(n: int, s: int) -> int:
    """Smallest ``m ≥ n`` that is a multiple of ``s`` with ``m / s`` FFT-friendly."""
    return s * next_fast_len(-(-n // s))


class PhaseSpaceLF(LinearOperator):
    """LFM forward operator ``(B, D, Y, X) -> (B, A, Y/s, X/s)`` and its adjoint.

    Parameters
    ----------
    psf_views:
        ``(A, D, h, w)`` kernels on the volume grid (e.g. ``lfm_psf(...).array``),
        centre at ``(h // 2, w // 2)``. Any ``A`` (all ``Nnum²`` views or a selection).
    supersample:
        ``s``, volume voxels per lenslet pitch (views' sampling step on the volume grid).
    volume_shape:
        ``(D, Y, X)`` with ``Y`` and ``X`` multiples of ``s``.
    max_spectra_bytes:
        Budget for precomputed kernel spectra; above it, spectra are computed on
        the fly per chunk of angles (slower, little memory).

    Inputs may be ``(B, D, Y, X)`` or unbatched ``(D, Y, X)`` (and ``(B, A, Ny, Nx)``
    or ``(A, Ny, Nx)`` for the adjoint); the output follows the input. Any float
    dtype and device; computation happens in the input's dtype/device.
    """

    def __init__(
        self,
        psf_views: torch.Tensor | np.ndarray,
        supersample: int,
        volume_shape: tuple[int, int, int],
        *,
        max_spectra_bytes: int = 2**31,
    ) -> None:
        super().__init__()
        kernel = torch.as_tensor(np.asarray(psf_views) if not isinstance(psf_views, torch.Tensor) else psf_views)
        if kernel.ndim != 4:
            raise ValueError(f"psf_views must be (A, D, h, w), got shape {tuple(kernel.shape)}")
        if not kernel.is_floating_point():
            kernel = kernel.float()
        s = int(supersample)
        if s < 1 or s != supersample:
            raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
        volume_shape = tuple(int(v) for v in volume_shape)
        if len(volume_shape) != 3 or min(volume_shape) < 1:
            raise ValueError(f"volume_shape must be (D, Y, X), got {volume_shape}")
        depth, height, width = volume_shape
        if depth != kernel.shape[1]:
            raise ValueError(f"volume has {depth} depths but the PSF has {kernel.shape[1]}")
        if height % s or width % s:
            raise ValueError(f"volume lateral shape {(height, width)} must be a multiple of supersample {s}")
        self.supersample = s
        self.volume_shape: tuple[int, int, int] = (depth, height, width)
        self.n_views = int(kernel.shape[0])
        self.lenslets = (height // s, width // s)
        self.views_shape: tuple[int, int, int] = (self.n_views, *self.lenslets)
        kh, kw = int(kernel.shape[2]), int(kernel.shape[3])
        # Linear convolution for outputs inside the box: pad by the kernel half-width (+1 for the s//2 shift).
        self.fft_shape = (
            _fft_len_multiple(height + kh // 2 + 1, s),
            _fft_len_multiple(width + kw // 2 + 1, s),
        )
        self.coarse_shape = (self.fft_shape[0] // s, self.fft_shape[1] // s)
        self.max_spectra_bytes = int(max_spectra_bytes)
        self.register_buffer("psf", kernel.contiguous(), persistent=False)
        self._spectra: torch.Tensor | None = None  # cached (Qy·(Px//2+1), s·D, A), for one device/dtype
        self._index_cache: dict[str, tuple[torch.Tensor, ...]] = {}

    @property
    def data_shape(self) -> tuple[int, int, int]:  # type: ignore[override]
        """The views' shape ``(A, Y/s, X/s)`` (the operator base's name for ``views_shape``)."""
        return self.views_shape

    # ------------------------------------------------------------ spectra
    def _complex_dtype(self, dtype: torch.dtype) -> torch.dtype:
        return torch.complex128 if dtype == torch.float64 else torch.complex64

    def spectra_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Memory that all ``A × D`` kernel spectra take in ``dtype``'s complex type."""
        py, px = self.fft_shape
        itemsize = 16 if dtype == torch.float64 else 8
        return self.n_views * self.volume_shape[0] * py * (px // 2 + 1) * itemsize

    def _kernel_spectra(self, views: slice, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Kernel spectra of ``views`` in the layout the batched matmuls use: ``(Qy·(Px//2+1), s·D, a)``.

        Kernels are placed with their centre at index ``-(s//2)`` so that output
        index ``s·j`` of the convolution reads lenslet centre ``s·j + s//2``.
        The y frequency ``ky = l·Qy + my`` is split so that ``l`` (the ``s``
        aliases that fold onto ``my`` when sampling every s-th row) joins the
        depth in the contracted axis: one matmul sums over depths and folds.
        The angle axis is last so that both directions are row-vector × matrix
        products per frequency (``(B, s·D) @ (s·D, a)``, and ``(B, a) @ (a, s·D)``
        through a transposed view), which BLAS batches well, instead of
        matrix × column-vector products, which it runs one frequency at a time.
        """
        kernel = self.psf[views].to(device=device, dtype=dtype)
        kh, kw = kernel.shape[-2:]
        py, px = self.fft_shape
        qy = self.coarse_shape[0]
        s, depth = self.supersample, self.volume_shape[0]
        padded = kernel.new_zeros(kernel.shape[:-2] + (py, px))
        padded[..., :kh, :kw] = kernel
        shift = s // 2
        padded = torch.roll(padded, shifts=(-(kh // 2) - shift, -(kw // 2) - shift), dims=(-2, -1))
        spectra = torch.fft.rfft2(padded)  # (a, D, Py, Pxh)
        n = spectra.shape[0]
        spectra = spectra.reshape(n, depth, s, qy, px // 2 + 1).permute(3, 4, 2, 1, 0)  # (Qy, Pxh, l, D, a)
        return spectra.reshape(qy * (px // 2 + 1), s * depth, n).contiguous()

    def _all_spectra(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """All kernel spectra if they fit the budget (cached for one device/dtype), else ``None``."""
        if self.spectra_bytes(dtype) > self.max_spectra_bytes:
            return None
        cdtype = self._complex_dtype(dtype)
        cached = self._spectra
        if cached is None or cached.device != device or cached.dtype != cdtype:
            self._spectra = None  # release the old copy before making a new one
            self._spectra = self._kernel_spectra(slice(None), device, dtype)
        return self._spectra

    def _angle_chunks(self, dtype: torch.dtype) -> list[slice]:
        """Angle ranges processed together (all at once when spectra are precomputed)."""
        per_view = max(1, self.spectra_bytes(dtype) // max(self.n_views, 1))
        if self.spectra_bytes(dtype) <= self.max_spectra_bytes:
            step = self.n_views
        else:
            step = max(1, int(self.max_spectra_bytes * _CHUNK_FRACTION) // per_view)
        return [slice(a, min(a + step, self.n_views)) for a in range(0, self.n_views, step)]

    def _spectra_for(
        self, views: slice, all_spectra: torch.Tensor | None, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        if all_spectra is not None:
            return all_spectra[..., views]
        return self._kernel_spectra(views, device, dtype)

    # ------------------------------------------------------------ shapes
    def _check(self, x: torch.Tensor, shape: tuple[int, ...], what: str) -> tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{what} must be a torch tensor, got {type(x).__name__}")
        unbatched = x.ndim == len(shape)
        if unbatched:
            x = x[None]
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
            raise ValueError(f"{what} must be (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        return x, unbatched

    # ------------------------------------------------------------ operator
    def forward(self, vol: torch.Tensor, views: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Views ``(B, A, Y/s, X/s)`` of a volume ``(B, D, Y, X)``.

        ``views`` (indices into the PSF's angle axis) computes only those views,
        ``(B, len(views), Y/s, X/s)``, at a cost proportional to their number:
        self-supervised training compares a random subset each step.
        """
        if views is not None:
            return self._forward_subset(vol, views)
        vol, unbatched = self._check(vol, self.volume_shape, "the volume")
        batch, depth = vol.shape[0], self.volume_shape[0]
        s = self.supersample
        py, px = self.fft_shape
        qy = self.coarse_shape[0]
        ny, nx = self.lenslets
        pxh = px // 2 + 1
        # each depth is transformed once, laid out frequency-first with (alias l, depth) as the contracted axis
        vol_spec = torch.fft.rfft2(vol, s=(py, px)).reshape(batch, depth, s, qy, pxh)
        vol_spec = vol_spec.permute(3, 4, 0, 2, 1).reshape(qy * pxh, batch, s * depth).contiguous()
        spectra = self._all_spectra(vol.device, vol.dtype)
        outputs = []
        for views in self._angle_chunks(vol.dtype):
            kernels = self._spectra_for(views, spectra, vol.device, vol.dtype)  # (Qy·Pxh, s·D, a)
            # Σ over depths and over the s y-aliases: the spectrum of every s-th row (hence / s)
            folded = torch.matmul(vol_spec, kernels) / s  # (Qy·Pxh, B, a)
            folded = folded.reshape(qy, pxh, batch, -1).permute(2, 3, 0, 1)
            rows = torch.fft.irfft2(folded, s=(qy, px))  # every s-th row; x still at full resolution
            outputs.append(rows[..., :ny, : s * nx : s])
        out = torch.cat(outputs, dim=1)
        return out[0] if unbatched else out

    def _volume_spectrum(self, vol: torch.Tensor) -> torch.Tensor:
        """Each depth's spectrum, frequency-first, with (alias l, depth) as the contracted axis."""
        batch, depth = vol.shape[0], self.volume_shape[0]
        s = self.supersample
        py, px = self.fft_shape
        qy = self.coarse_shape[0]
        vol_spec = torch.fft.rfft2(vol, s=(py, px)).reshape(batch, depth, s, qy, px // 2 + 1)
        return vol_spec.permute(3, 4, 0, 2, 1).reshape(qy * (px // 2 + 1), batch, s * depth).contiguous()

    def _forward_subset(self, vol: torch.Tensor, views: Sequence[int] | torch.Tensor) -> torch.Tensor:
        vol, unbatched = self._check(vol, self.volume_shape, "the volume")
        index = torch.as_tensor(views, dtype=torch.long, device=self.psf.device).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.n_views):
            raise ValueError(f"view indices must lie in [0, {self.n_views - 1}], got {index.tolist()}")
        s = self.supersample
        px = self.fft_shape[1]
        qy = self.coarse_shape[0]
        ny, nx = self.lenslets
        spectra = self._all_spectra(vol.device, vol.dtype)
        if spectra is not None:
            kernels = spectra.index_select(-1, index.to(spectra.device))
        else:
            kernels = self._kernel_spectra(index, vol.device, vol.dtype)  # type: ignore[arg-type]
        folded = torch.matmul(self._volume_spectrum(vol), kernels) / s  # (Qy·Pxh, B, a)
        folded = folded.reshape(qy, px // 2 + 1, vol.shape[0], -1).permute(2, 3, 0, 1)
        out = torch.fft.irfft2(folded, s=(qy, px))[..., :ny, : s * nx : s]
        return out[0] if unbatched else out

    def adjoint(self, views: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`forward`: views ``(B, A, Y/s, X/s)`` to a volume ``(B, D, Y, X)``."""
        views, unbatched = self._check(views, self.views_shape, "the views")
        batch = views.shape[0]
        s = self.supersample
        depth, height, width = self.volume_shape
        py, px = self.fft_shape
        qy = self.coarse_shape[0]
        ny, nx = self.lenslets
        pxh = px // 2 + 1
        # zero-insert along x in space; along y the zero-inserted spectrum is the Qy-periodic repeat of the
        # coarse one, which the (alias l, depth) axis of the kernel spectra takes care of
        upsampled = views.new_zeros((batch, self.n_views, ny, px))
        upsampled[..., : s * nx : s] = views
        view_spec = torch.fft.rfft2(upsampled, s=(qy, px)).permute(2, 3, 0, 1).reshape(qy * pxh, batch, -1)
        # contiguous, conjugated in memory: strided or lazily conjugated operands make CPU matmul copy per frequency
        view_spec = view_spec.contiguous().conj_physical_()
        spectra = self._all_spectra(views.device, views.dtype)
        acc = None
        for chunk in self._angle_chunks(views.dtype):
            kernels = self._spectra_for(chunk, spectra, views.device, views.dtype)  # (Qy·Pxh, s·D, a)
            # Σ_a conj(H)·V = conj(Σ_a conj(V)·H): the conjugates stay on the small tensors
            part = torch.matmul(view_spec[..., chunk], kernels.transpose(-2, -1))  # (Qy·Pxh, B, s·D)
            acc = part if acc is None else acc + part
        assert acc is not None
        spec = acc.conj().reshape(qy, pxh, batch, s, depth).permute(2, 4, 3, 0, 1).reshape(batch, depth, py, pxh)
        vol = torch.fft.irfft2(spec, s=(py, px))[..., :height, :width]
        return vol[0] if unbatched else vol

    def ones_adjoint(
        self, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``adjoint(1)``, ``(D, Y, X)``: the Richardson–Lucy normaliser."""
        ones = torch.ones(self.views_shape, device=device if device is not None else self.psf.device, dtype=dtype)
        return self.adjoint(ones)

    def extra_repr(self) -> str:
        """Shapes, for printing the module."""
        return (
            f"views={self.n_views}, volume_shape={self.volume_shape}, supersample={self.supersample}, "
            f"kernel={tuple(self.psf.shape[-2:])}, fft_shape={self.fft_shape}"
        )
