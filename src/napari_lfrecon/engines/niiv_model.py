"""niiv's network (Troidl et al.): a 2D EDSR encoder and a continuous local-attention decoder.

A slice ``(Hc, W)`` that is coarse along its first axis (``Hc = H / af``) is
encoded once into a latent grid ``(C, Hc, W)`` by an EDSR trunk without
upsampling. The decoder is a neural field: any continuous query coordinate
``(h, w)`` on the FINE grid (``h`` in ``[-0.5, Hc·af - 0.5]``, cell-centred: fine
row ``h`` lies at coarse coordinate ``(h + 0.5) / af - 0.5``) is mapped to one
intensity from

* the bilinear samples (clamped at the border) of the latent grid and of the
  coarse input intensity at the query,
* single-head attention over the 3×3 latent cells around the query's nearest
  cell, the query vector being the bilinear latent sample and each score
  getting a learned term of the positional encoding of the query's offset
  from that cell,
* a positional encoding with 2 frequency bands (sin/cos, 8 numbers) of the
  query's offset from its nearest cell,

fed to an MLP (``mlp_depth`` layers of ``mlp_width`` with ReLU) whose output,
added to the logit of the bilinearly interpolated input intensity (so an
untrained network starts from linear interpolation and learns the
correction), goes through a sigmoid: values in ``(0, 1)``.

Speed: every linear map that acts on latent vectors before they are mixed is
applied once per latent cell instead of once per query (bilinear sampling and
attention-weighted sums commute with linear maps): the query and key
projections, the value projection followed by the MLP's first layer, and the
first layer's weights for the bilinear latent sample. :meth:`NiivNet.prepare`
builds these per-cell tables once per slice; :meth:`NiivNet.decode_prepared`
then costs, per query, a few gathers plus the hidden MLP layers. The result is
the same function as evaluating the layers per query (tests check it against
a direct per-query evaluation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Positional-encoding frequency bands are ``π·2^k / _PE_RANGE``: offsets up to ±2 cells stay unambiguous
#: (the 3×3 neighbourhood spans ±1.5 cells from a query).
_PE_RANGE = 2.0
#: Intensities are clamped to ``[_EPS, 1 - _EPS]`` before their logit (the skip connection of the output).
_EPS = 1e-3
#: Offsets of the 3×3 neighbourhood (row, column), raster order.
_NEIGHBOURS = tuple((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1))


@dataclass(frozen=True)
class NiivConfig:
    """Sizes of a niiv network (what a weights file records to rebuild it).

    ``features``/``blocks``: the EDSR encoder's width and residual blocks;
    ``attn_dim``: query/key size of the single attention head; ``mlp_width``
    and ``mlp_depth``: the decoder MLP (``mlp_depth`` ReLU layers of
    ``mlp_width``, then one output); ``pe_bands``: positional-encoding bands;
    ``anisotropy``: the integer factor between the coarse and fine axis the
    network is trained for; ``res_scale``: EDSR's residual scaling.
    """

    features: int = 32
    blocks: int = 4
    attn_dim: int = 16
    mlp_width: int = 64
    mlp_depth: int = 3
    pe_bands: int = 2
    anisotropy: int = 8
    res_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("features", "attn_dim", "mlp_width", "mlp_depth", "pe_bands", "anisotropy"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"NiivConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if int(self.blocks) < 0:
            raise ValueError(f"NiivConfig.blocks must be ≥ 0, got {self.blocks}")

    @classmethod
    def reference(cls, anisotropy: int = 8) -> NiivConfig:
        """The published configuration: EDSR 64 features × 16 blocks, MLP 5 × 256, attention over 64 features."""
        return cls(features=64, blocks=16, attn_dim=64, mlp_width=256, mlp_depth=5, anisotropy=anisotropy)

    @classmethod
    def small(cls, anisotropy: int = 8) -> NiivConfig:
        """The shipped configuration (chosen by measurement, see ``benchmarks/bench_niiv.py``)."""
        return cls(features=32, blocks=4, attn_dim=16, mlp_width=64, mlp_depth=3, anisotropy=anisotropy)

    @classmethod
    def preset(cls, name: str, anisotropy: int = 8) -> NiivConfig:
        """``"small"`` or ``"reference"``."""
        if name == "small":
            return cls.small(anisotropy)
        if name == "reference":
            return cls.reference(anisotropy)
        raise ValueError(f"unknown niiv preset {name!r}; expected 'small' or 'reference'")

    @property
    def pe_dim(self) -> int:
        """Length of a 2D positional encoding: sin and cos per band and axis."""
        return 4 * self.pe_bands

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NiivConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys raise ``ValueError`` (a file from another version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown niiv config field(s) {unknown}; expected {sorted(known)}")
        return cls(**values)


def positional_encoding(offset: torch.Tensor, bands: int) -> torch.Tensor:
    """``(..., 2)`` offsets in latent-cell units → ``(..., 4·bands)``: sin/cos of ``π·2^k·offset / 2`` per axis."""
    freqs = math.pi / _PE_RANGE * (2.0 ** torch.arange(bands, device=offset.device, dtype=offset.dtype))
    angles = (offset[..., :, None] * freqs).flatten(-2)  # (..., 2·bands)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def slot_rotation(bands: int) -> torch.Tensor:
    """``(pe, 9·pe)`` matrix ``R`` with ``PE(δ) @ R = [PE(δ − s) for the 9 slots s]`` (angle addition).

    With ``a`` an angle of ``PE(δ)`` and ``c`` the same frequency times the slot offset:
    ``sin(a − c) = sin a·cos c − cos a·sin c`` and ``cos(a − c) = cos a·cos c + sin a·sin c``.
    """
    freqs = math.pi / _PE_RANGE * (2.0 ** torch.arange(bands, dtype=torch.float64))
    blocks = []
    for di, dj in _NEIGHBOURS:
        shift = (torch.tensor([di, dj], dtype=torch.float64)[:, None] * freqs).flatten()  # (k,)
        cos, sin = torch.diag(torch.cos(shift)), torch.diag(torch.sin(shift))
        # rows: input [sin a; cos a], columns: output [sin(a − c); cos(a − c)]
        blocks.append(torch.cat([torch.cat([cos, sin], dim=1), torch.cat([-sin, cos], dim=1)], dim=0))
    return torch.cat(blocks, dim=1).to(torch.float32)


class ResBlock(nn.Module):
    """EDSR residual block: conv–ReLU–conv, scaled, added to the input (no batch norm)."""

    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + s·conv(relu(conv(x)))``."""
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


class EDSREncoder(nn.Module):
    """2D EDSR trunk without the upsampler: head conv, residual blocks, body conv, global skip."""

    def __init__(self, features: int, blocks: int, res_scale: float) -> None:
        super().__init__()
        self.head = nn.Conv2d(1, features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(features, res_scale) for _ in range(blocks)])
        self.tail = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` → ``(B, features, H, W)``."""
        head = self.head(x)
        return head + self.tail(self.body(head))


@dataclass
class PreparedSlices:
    """Per-latent-cell tables of a batch of encoded slices (see :meth:`NiivNet.prepare`), ``M = Hc·W`` cells.

    ``query``: ``(B, M, attn_dim + 1)`` query projection and the cell's coarse
    intensity (both sampled bilinearly); ``key``: ``(B, M, attn_dim)``;
    ``hidden``: ``(B, 2·M, mlp_width)``, rows ``[0, M)`` the first MLP layer's
    terms of each cell's latent and coarse intensity (plus the bias; sampled
    bilinearly), rows ``[M, 2·M)`` each cell's value projection through the
    first layer (weighted by attention). ``shape`` = ``(Hc, W)``.
    """

    query: torch.Tensor
    key: torch.Tensor
    hidden: torch.Tensor
    shape: tuple[int, int]

    @property
    def batch(self) -> int:
        """Number of slices."""
        return int(self.key.shape[0])

    def nbytes(self) -> int:
        """Memory held by the tables."""
        return sum(t.numel() * t.element_size() for t in (self.query, self.key, self.hidden))

    def select(self, index: int | slice) -> PreparedSlices:
        """A sub-batch (views, no copy)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return PreparedSlices(self.query[index], self.key[index], self.hidden[index], self.shape)

    def clone(self) -> PreparedSlices:
        """A copy that owns its memory (a view of a larger batch would keep the whole batch alive)."""
        return PreparedSlices(self.query.clone(), self.key.clone(), self.hidden.clone(), self.shape)

    @staticmethod
    def cat(parts: list[PreparedSlices]) -> PreparedSlices:
        """Concatenate batches of slices of the same shape."""
        return PreparedSlices(
            torch.cat([p.query for p in parts]),
            torch.cat([p.key for p in parts]),
            torch.cat([p.hidden for p in parts]),
            parts[0].shape,
        )


@dataclass
class Queries:
    """Query points located in a latent grid (:meth:`NiivNet.queries`), ``batch·n`` rows.

    ``corners`` ``(·, 4)`` and ``bilinear`` ``(·, 4)``: bilinear cells and
    weights; ``cells`` ``(·, 9)``: the 3×3 neighbourhood of the nearest cell;
    ``pe`` ``(·, pe_dim)``: positional encoding of the offset from the nearest
    cell. Cell indices are within one slice (``row·W + column``).
    """

    corners: torch.Tensor
    cells: torch.Tensor
    bilinear: torch.Tensor
    pe: torch.Tensor
    batch: int
    n: int


class NiivNet(nn.Module):
    """The niiv encoder + neural-field decoder (see the module docstring)."""

    def __init__(self, config: NiivConfig) -> None:
        super().__init__()
        self.config = config
        c, d, w = config.features, config.attn_dim, config.mlp_width
        self.encoder = EDSREncoder(c, config.blocks, config.res_scale)
        self.to_query = nn.Linear(c, d, bias=False)
        self.to_key = nn.Linear(c, d, bias=False)
        # value projection composed with the first MLP layer (a product of linear maps is one linear map)
        self.value_in = nn.Linear(c, w, bias=False)
        self.latent_in = nn.Linear(c, w, bias=False)
        self.intensity_in = nn.Linear(1, w, bias=True)  # carries the first layer's bias
        self.pe_in = nn.Linear(config.pe_dim, w, bias=False)  # the query's offset from its nearest cell
        self.pe_score = nn.Linear(config.pe_dim, 1, bias=False)  # positional term of each attention score
        self.hidden = nn.ModuleList([nn.Linear(w, w) for _ in range(config.mlp_depth - 1)])
        self.out = nn.Linear(w, 1)
        self.register_buffer("_slots", torch.tensor(_NEIGHBOURS, dtype=torch.long), persistent=False)
        self.register_buffer("_slot_rotation", slot_rotation(config.pe_bands), persistent=False)

    # ------------------------------------------------------------------ encoder
    def encode(self, slices: torch.Tensor) -> torch.Tensor:
        """``(B, 1, Hc, W)`` normalised coarse slices → latent grid ``(B, features, Hc, W)``."""
        if slices.ndim != 4 or slices.shape[1] != 1:
            raise ValueError(f"encode expects slices of shape (B, 1, Hc, W), got {tuple(slices.shape)}")
        return self.encoder(slices)

    def prepare(self, latent: torch.Tensor, lowres: torch.Tensor) -> PreparedSlices:
        """Per-cell tables of latent ``(B, C, Hc, W)`` and its input ``lowres`` ``(B, 1, Hc, W)`` (once per slice)."""
        if latent.ndim != 4 or lowres.ndim != 4 or latent.shape[-2:] != lowres.shape[-2:]:
            raise ValueError(
                f"prepare expects latent (B, C, Hc, W) and lowres (B, 1, Hc, W) on the same grid, "
                f"got {tuple(latent.shape)} and {tuple(lowres.shape)}"
            )
        b, c, hc, w = latent.shape
        cells = latent.permute(0, 2, 3, 1).reshape(b, hc * w, c)
        intensity = lowres.reshape(b, hc * w, 1).to(cells.dtype)
        first = self.latent_in(cells) + self.intensity_in(intensity)
        hidden = torch.cat([first, self.value_in(cells)], dim=1)
        query = torch.cat([self.to_query(cells), intensity], dim=-1)  # the intensity rides along for the skip
        return PreparedSlices(query, self.to_key(cells), hidden, (hc, w))

    # ------------------------------------------------------------------ decoder
    def fine_to_coarse(self, coords: torch.Tensor) -> torch.Tensor:
        """Fine-grid pixel coordinates ``(..., 2)`` → latent-cell coordinates (cell-centred along the first axis)."""
        af = float(self.config.anisotropy)
        return torch.stack([(coords[..., 0] + 0.5) / af - 0.5, coords[..., 1]], dim=-1)

    def decode(self, latent: torch.Tensor, lowres: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Values ``(B, N)`` in ``[0, 1]`` at fine-grid coordinates ``coords`` ``(B, N, 2)`` (or ``(1, N, 2)``)."""
        return self.decode_prepared(self.prepare(latent, lowres), coords)

    def forward(self, lowres: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``lowres`` ``(B, 1, Hc, W)`` and decode at ``coords`` ``(B, N, 2)`` (training)."""
        return self.decode(self.encode(lowres), lowres, coords)

    def decode_prepared(self, prepared: PreparedSlices, coords: torch.Tensor) -> torch.Tensor:
        """Decode at fine-grid ``coords`` ``(B, N, 2)``; ``(1, N, 2)`` or ``(N, 2)`` is shared by every slice."""
        if coords.ndim == 2:
            coords = coords[None]
        b = prepared.batch
        if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] not in (1, b):
            raise ValueError(f"coords must be (B, N, 2) or (1, N, 2) with B = {b}, got {tuple(coords.shape)}")
        return self.decode_queries(prepared, self.queries(coords, prepared.shape, prepared.key.dtype))

    def queries(self, coords: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype | None = None) -> Queries:
        """Where fine-grid ``coords`` ``(B, N, 2)`` fall in a latent grid of ``shape`` (reusable across slices)."""
        hc, w = shape
        dtype = dtype or coords.dtype
        coarse = self.fine_to_coarse(coords.to(dtype))
        bq, n = coarse.shape[:2]
        pos_h = coarse[..., 0].clamp(0.0, hc - 1.0)
        pos_w = coarse[..., 1].clamp(0.0, w - 1.0)
        # bilinear corners (border-clamped) and their weights
        h0 = pos_h.floor().clamp(max=max(hc - 2, 0)).long()
        w0 = pos_w.floor().clamp(max=max(w - 2, 0)).long()
        fh = pos_h - h0
        fw = pos_w - w0
        h1 = (h0 + 1).clamp(max=hc - 1)
        w1 = (w0 + 1).clamp(max=w - 1)
        corners = torch.stack([h0 * w + w0, h0 * w + w1, h1 * w + w0, h1 * w + w1], dim=-1)
        bilinear = torch.stack([(1 - fh) * (1 - fw), (1 - fh) * fw, fh * (1 - fw), fh * fw], dim=-1)
        # the 3×3 neighbourhood of the nearest cell (clamped at the border; slots keep their nominal offsets)
        near_h = coarse[..., 0].round().clamp(0, hc - 1)
        near_w = coarse[..., 1].round().clamp(0, w - 1)
        offset = coarse - torch.stack([near_h, near_w], dim=-1)
        cell_h = (near_h.long().unsqueeze(-1) + self._slots[:, 0]).clamp(0, hc - 1)
        cell_w = (near_w.long().unsqueeze(-1) + self._slots[:, 1]).clamp(0, w - 1)
        cells = cell_h * w + cell_w
        pe = positional_encoding(offset.reshape(bq * n, 2), self.config.pe_bands)
        return Queries(corners.reshape(bq * n, 4), cells.reshape(bq * n, 9), bilinear.reshape(bq * n, 4), pe, bq, n)

    def decode_queries(self, prepared: PreparedSlices, queries: Queries) -> torch.Tensor:
        """Values ``(B, N)`` of ``queries`` (from :meth:`queries`, per slice or shared) in the slices ``prepared``."""
        hc, w = prepared.shape
        b, n = prepared.batch, queries.n
        if queries.batch not in (1, b):
            raise ValueError(f"queries for {queries.batch} slices cannot be decoded in {b} slices")
        cells_per_slice = hc * w
        # every slice's rows in the flattened tables; shared queries repeat for each slice
        slice_of = torch.arange(b, device=queries.cells.device).repeat_interleave(n).unsqueeze(-1)
        corners, cells = queries.corners, queries.cells
        bilinear, pe = queries.bilinear, queries.pe
        if queries.batch == 1 and b > 1:
            corners, cells = corners.repeat(b, 1), cells.repeat(b, 1)
            bilinear, pe = bilinear.repeat(b, 1), pe.repeat(b, 1)
        dtype = prepared.key.dtype
        d = self.config.attn_dim
        # attention: bilinear query, keys of the 9 cells, positional term of each slot's offset
        sampled = F.embedding_bag(
            corners + slice_of * cells_per_slice,
            prepared.query.reshape(-1, d + 1),
            per_sample_weights=bilinear,
            mode="sum",
        )
        query, intensity = sampled[:, :d], sampled[:, d]
        keys = F.embedding(cells + slice_of * cells_per_slice, prepared.key.reshape(-1, d))  # (m, 9, d)
        # PE(offset − slot) for the 9 slots is a fixed linear map of PE(offset) (angle addition), so the
        # positional score term is one small matrix product
        rotation = self._slot_rotation.to(dtype).view(pe.shape[-1], 9, pe.shape[-1])
        scores = (keys * query.unsqueeze(1)).sum(-1) / math.sqrt(d) + pe @ (rotation @ self.pe_score.weight[0])
        attn = torch.softmax(scores, dim=-1)  # (m, 9)
        # first MLP layer: bilinear latent/intensity terms and attention-weighted values in one weighted gather
        rows = torch.cat([corners, cells + cells_per_slice], dim=-1) + slice_of * (2 * cells_per_slice)
        hidden = F.embedding_bag(
            rows,
            prepared.hidden.reshape(-1, prepared.hidden.shape[-1]),
            per_sample_weights=torch.cat([bilinear, attn], dim=-1),
            mode="sum",
        )
        hidden = torch.relu(torch.addmm(hidden, pe, self.pe_in.weight.t()))
        for layer in self.hidden:
            hidden = torch.relu(torch.addmm(layer.bias, hidden, layer.weight.t()))
        # the MLP predicts a correction to the bilinear interpolation of the input, in logit space
        base = torch.logit(intensity.clamp(_EPS, 1.0 - _EPS))
        return torch.sigmoid(self.out(hidden).squeeze(-1) + base).view(b, n)

    def n_parameters(self) -> int:
        """Number of trainable numbers."""
        return sum(p.numel() for p in self.parameters())


__all__ = ["EDSREncoder", "NiivConfig", "NiivNet", "PreparedSlices", "Queries", "positional_encoding", "slot_rotation"]
