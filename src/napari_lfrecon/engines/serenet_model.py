"""SeReNet's network and its physics-derived input: the PSF-shift refocused stack.

Input ("psfshift"): every angular view is shifted, for every depth, by the
centre of mass of that view's PSF kernel at that depth (in lenslets). A point
at depth ``z`` appears in view ``a`` displaced by exactly that centre of mass
(the parallax of the view's ray direction), so undoing it brings every view's
image of depth-``z`` structure onto the same lenslets: the stack
``(A, D, Ny, Nx)`` is a set of per-view refocused images, and its mean over
views is the classical shift-and-sum refocus.

Network: a plain Conv3d stack over ``(depth, y, x)`` with the views as input
channels and LeakyReLU(0.1) activations; the in-plane sampling is raised from
the lenslet grid to the volume grid by ``ceil(log2 s)`` trilinear
upsamplings (about ×2 each) in a geometric progression that ends at exactly
``supersample`` voxels per lenslet. Channel widths follow the published design
(views→64→32→32→16, ×2, 16→16→8, ×2, 8→8→4→1) scaled by ``width``; the number
of upsampling stages comes from the supersampling, the number of input
channels from the views in use and the depth count from the PSF.

Optional view mixing (``view_mix > 0``, not in the published design): a
learned 1×1×1 linear combination of the refocused views into ``view_mix``
channels before the first 3×3×3 convolution. With 177 views the published
first layer (views × 64 × 27 weights per voxel) is ~70 % of the network's
time on a CPU; mixing first makes it ~20× cheaper.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Published channel widths: low-resolution trunk, then one group per ×2 upsampling stage.
_TRUNK_CHANNELS = (64, 32, 32, 16)
_STAGE_CHANNELS = ((16, 8), (8, 4))
#: Negative slope of the LeakyReLU activations (as published).
_LEAKY_SLOPE = 0.1
#: Below this many input or output channels the CPU Conv3d is slow; see :class:`Conv3x3x3`.
_NATIVE_MIN_CHANNELS = 16


def psf_centres_of_mass(psf_views: np.ndarray) -> np.ndarray:
    """``(A, D, 2)`` centre of mass ``(dy, dx)`` of every kernel, in volume voxels relative to its centre.

    The kernel centre is index ``shape // 2`` (the PSF convention); a kernel with
    no light (e.g. a view outside the aperture) gets ``(0, 0)``.
    """
    kernel = np.asarray(psf_views)
    if kernel.ndim != 4:
        raise ValueError(f"psf_views must be (A, D, h, w), got shape {kernel.shape}")
    kh, kw = kernel.shape[-2:]
    # marginal sums accumulated in float64 without a float64 copy of the kernels (PSFs reach 100s of MB)
    rows = kernel.sum(axis=-1, dtype=np.float64)  # (A, D, h)
    cols = kernel.sum(axis=-2, dtype=np.float64)  # (A, D, w)
    total = rows.sum(axis=-1)
    y = np.arange(kh) - kh // 2
    x = np.arange(kw) - kw // 2
    safe = np.where(total > 0, total, 1.0)
    cy = (rows @ y) / safe
    cx = (cols @ x) / safe
    return np.stack([cy, cx], axis=-1).astype(np.float32)


def view_shifts_lenslets(psf_views: np.ndarray, supersample: int) -> np.ndarray:
    """``(A, D, 2)`` displacement ``(dy, dx)`` of each view's image of depth ``d``, in lenslets.

    From the phase-space model ``views[a][j] = Σ_x vol[x]·H[a, z][c + s·j + s//2 − x]``:
    a point at voxel ``x0`` lights lenslet ``j`` where ``s·j ≈ x0 − s//2 + com``,
    i.e. it appears ``com / s`` lenslets away from its own lenslet.
    """
    return psf_centres_of_mass(psf_views) / float(supersample)


def refocus(views: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """The psfshift stack: views ``(B, A, Ny, Nx)`` → ``(B, A, D, Ny, Nx)``.

    View ``a`` at depth ``d`` is moved by ``−shifts[a, d]`` lenslets.
    Bilinear sub-lenslet interpolation, zeros outside the field (no wrap-around),
    so tiles of the stack equal the stack of the whole frame away from its edges.
    """
    if views.ndim != 4:
        raise ValueError(f"views must be (B, A, Ny, Nx), got shape {tuple(views.shape)}")
    batch, n_views, ny, nx = views.shape
    if shifts.shape[0] != n_views or shifts.shape[-1] != 2:
        raise ValueError(f"shifts must be ({n_views}, D, 2) for {n_views} views, got {tuple(shifts.shape)}")
    depth = shifts.shape[1]
    shifts = shifts.to(views.device, views.dtype)
    # grid_sample's normalised coordinates (align_corners=True): pixel i ↔ −1 + 2i/(n−1)
    ys = torch.arange(ny, device=views.device, dtype=views.dtype)
    xs = torch.arange(nx, device=views.device, dtype=views.dtype)
    # output pixel j reads input position j + shift (the image sits `shift` lenslets further along)
    sample_y = ys[None, None, :, None] + shifts[:, :, 0, None, None]  # (A, D, Ny, 1)
    sample_x = xs[None, None, None, :] + shifts[:, :, 1, None, None]  # (A, D, 1, Nx)
    norm_y = 2 * sample_y / max(ny - 1, 1) - 1
    norm_x = 2 * sample_x / max(nx - 1, 1) - 1
    grid = torch.stack(torch.broadcast_tensors(norm_x, norm_y), dim=-1)  # (A, D, Ny, Nx, 2)
    grid = grid.reshape(n_views, depth * ny, nx, 2)
    source = views.permute(1, 0, 2, 3)  # (A, B, Ny, Nx): views as the grid_sample batch
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(n_views, batch, depth, ny, nx).permute(1, 0, 2, 3, 4)


@dataclass
class SeReNetConfig:
    """Everything needed to rebuild the network; stored in the weights header.

    ``view_indices`` are the PSF views (raster order) the network reads, in
    channel order; ``depths`` and ``supersample`` come from the PSF;
    ``width`` scales the published channel widths.
    """

    view_indices: list[int]
    depths: int
    supersample: int
    width: float = 1.0
    flux_factor: float = 1.0
    view_mix: int = 0
    trunk: list[int] = field(default_factory=list)
    stages: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.view_indices = [int(v) for v in self.view_indices]
        if not self.view_indices:
            raise ValueError("SeReNet needs at least one view")
        if int(self.depths) < 1:
            raise ValueError(f"SeReNet needs a PSF with depth planes, got depths={self.depths}")
        if int(self.supersample) < 1:
            raise ValueError(f"supersample must be ≥ 1, got {self.supersample}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        self.view_mix = int(self.view_mix)
        if self.view_mix < 0:
            raise ValueError(f"view_mix must be ≥ 0 (0 = no mixing layer), got {self.view_mix}")
        self.depths, self.supersample = int(self.depths), int(self.supersample)
        if not self.trunk:
            self.trunk = [_scaled(c, self.width) for c in _TRUNK_CHANNELS]
        if not self.stages:
            n_up = math.ceil(math.log2(self.supersample)) if self.supersample > 1 else 0
            groups = [_STAGE_CHANNELS[min(i, len(_STAGE_CHANNELS) - 1)] for i in range(n_up)]
            self.stages = [[_scaled(c, self.width) for c in g] for g in groups]

    @property
    def n_views(self) -> int:
        """Input channels: the number of views the network reads."""
        return len(self.view_indices)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SeReNetConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error: the file is from another version)."""
        known = {"view_indices", "depths", "supersample", "width", "flux_factor", "view_mix", "trunk", "stages"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SeReNet config field(s) {unknown}; expected {sorted(known)}")
        return cls(**values)


def _scaled(channels: int, width: float) -> int:
    return max(2, int(round(channels * width)))


class Conv3x3x3(nn.Conv3d):
    """A 3×3×3 ``Conv3d`` (zero padding 1) with a faster CPU path for few channels.

    Same parameters and the same result as ``nn.Conv3d``. With few channels,
    PyTorch's CPU Conv3d is very slow (a 4→1 convolution on 21×128×128 takes
    ~20× longer than its 8→8 neighbour); there the convolution is computed as
    three 2D convolutions (one per axial tap) of every depth plane, shifted
    along depth and summed, which is exact.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``(B, C, D, H, W)``."""
        if min(self.in_channels, self.out_channels) >= _NATIVE_MIN_CHANNELS or x.device.type != "cpu":
            return super().forward(x)
        batch, cin, depth, height, width = x.shape
        cout = self.out_channels
        planes = x.permute(0, 2, 1, 3, 4).reshape(batch * depth, cin, height, width)
        taps = self.weight.permute(2, 0, 1, 3, 4).reshape(3 * cout, cin, 3, 3)  # (kz·O, C, 3, 3)
        y = F.conv2d(planes, taps, padding=1).reshape(batch, depth, 3, cout, height, width)
        # tap kz reads depth d + kz − 1: tap 0 feeds the next plane, tap 2 the previous one
        out = y[:, :, 1]
        out = out + F.pad(y[:, :-1, 0], (0, 0, 0, 0, 0, 0, 1, 0)) + F.pad(y[:, 1:, 2], (0, 0, 0, 0, 0, 0, 0, 1))
        return out.permute(0, 2, 1, 3, 4) + self.bias[None, :, None, None, None]


def _conv(cin: int, cout: int) -> nn.Conv3d:
    return Conv3x3x3(cin, cout)


class ViewMix(nn.Module):
    """A 1×1×1 convolution over ``(B, C, D, H, W)`` computed as one matrix product (faster than Conv3d on CPU)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        layer = nn.Linear(cin, cout)  # same initialisation as a 1×1×1 Conv3d
        self.weight, self.bias = layer.weight, layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mix channels: ``out[:, o] = Σ_c weight[o, c]·x[:, c] + bias[o]``."""
        batch, cin = x.shape[:2]
        flat = x.reshape(batch, cin, -1)
        out = torch.matmul(self.weight, flat) + self.bias[None, :, None]
        return out.reshape(batch, -1, *x.shape[2:])


def upsample_planes(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """In-plane linear resize of ``(B, C, D, H, W)`` to ``(B, C, D, *size)`` (depth untouched).

    Equal to ``F.interpolate(x, (D, *size), mode="trilinear", align_corners=False)``
    (a depth scale of 1 samples every plane exactly) at about half the cost on a
    CPU: every depth plane is resized as a 2D image.
    """
    batch, channels, depth, height, width = x.shape
    planes = x.reshape(batch, channels * depth, height, width)
    out = F.interpolate(planes, size=size, mode="bilinear", align_corners=False)
    return out.reshape(batch, channels, depth, *size)


class SeReNetNet(nn.Module):
    """The SeReNet Conv3d network: psfshift stack ``(B, A, D, Ny, Nx)`` → volume ``(B, D, s·Ny, s·Nx)``.

    The output is in units of the input (the engine divides the views by a
    per-frame scale before and multiplies after); ``flux_factor`` converts a
    view intensity into the matching voxel intensity for this PSF so an
    untrained network starts at the right order of magnitude.
    """

    def __init__(self, config: SeReNetConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.n_views
        if config.view_mix:
            layers.append(ViewMix(cin, config.view_mix))
            cin = config.view_mix
        for cout in config.trunk:
            layers += [_conv(cin, cout), nn.LeakyReLU(_LEAKY_SLOPE)]
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.stages = nn.ModuleList()
        for group in config.stages:
            stage: list[nn.Module] = []
            for cout in group:
                stage += [_conv(cin, cout), nn.LeakyReLU(_LEAKY_SLOPE)]
                cin = cout
            self.stages.append(nn.Sequential(*stage))
        self.head = _conv(cin, 1)

    def receptive_radius_lenslets(self) -> int:
        """A bound on how far (in lenslets) one output voxel reads from its lenslet; tiles need this halo."""
        radius = float(len(self.config.trunk))  # 3×3 convolutions on the lenslet grid
        s, n = self.config.supersample, len(self.config.stages)
        previous = 1.0
        for i, group in enumerate(self.config.stages, start=1):
            scale = s ** (i / n)
            # linear interpolation reads one neighbour at the previous sampling; then the stage's convolutions
            radius += 1.0 / previous + len(group) / scale
            previous = scale
        radius += 1.0 / previous  # the head
        return int(math.ceil(radius))

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        """Predict the volume (not clipped; the caller clamps to ≥ 0 at inference)."""
        if stack.ndim != 5 or stack.shape[1] != self.config.n_views or stack.shape[2] != self.config.depths:
            raise ValueError(
                f"the SeReNet input must be (B, {self.config.n_views} views, {self.config.depths} depths, Ny, Nx), "
                f"got {tuple(stack.shape)}"
            )
        depth, ny, nx = stack.shape[2:]
        x = self.trunk(stack)
        for stage, (sy, sx) in zip(self.stages, self.stage_sizes(ny, nx), strict=True):
            # align_corners=False keeps pixel centres: lenslet j stays over voxel s·j + s//2 at every scale
            x = upsample_planes(x, (sy, sx))
            x = stage(x)
        return self.head(x)[:, 0] * self.config.flux_factor

    def stage_sizes(self, ny: int, nx: int) -> list[tuple[int, int]]:
        """In-plane size after each upsampling: a geometric progression ending at exactly ``s·(Ny, Nx)``.

        ``n`` stages (``ceil(log2 s)``, each about ×2 as published) raise the
        sampling by ``s^(i/n)``, so no final resize is needed (for s = 3: ×1.73, ×3).
        """
        s, n = self.config.supersample, len(self.config.stages)
        sizes = [(round(ny * s ** (i / n)), round(nx * s ** (i / n))) for i in range(1, n + 1)]
        if sizes:
            sizes[-1] = (s * ny, s * nx)
        return sizes

    def n_parameters(self) -> int:
        """Number of trainable numbers."""
        return sum(p.numel() for p in self.parameters())
