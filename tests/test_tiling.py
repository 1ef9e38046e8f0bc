"""The tiling module against its definitions: cover, partition of unity, identity, blur, halos, odd sizes."""

import itertools

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from napari_lfrecon.tiling import Blender, TileGrid, assemble, each_tile, spans, support, tile_weights


def weight_sum(grid: TileGrid) -> np.ndarray:
    """Σ over tiles of each tile's weight, where the tile is used (its support)."""
    total = np.zeros(grid.shape)
    for tile in grid.tiles:
        where = support(tile)
        w = tile_weights(tile, where)
        total[where] += 1.0 if w is None else w
    return total


@pytest.mark.parametrize(
    "shape, core, halo, half",
    [
        ((10, 70, 53), (10, 20, 20), (3, 5, 5), 3),  # odd sizes, short last cores
        ((10, 70, 53), (10, 20, 20), (3, 5, 5), 0),
        ((7, 9, 11), (3, 4, 5), (2, 2, 2), (1, 2, 2)),  # every axis cut, different ramps per axis
        ((33,), (8,), (4,), 4),  # 1-D, ramps as wide as the core allows
        ((5, 6), (5, 6), (3, 3), 2),  # one core: no ramps at all
    ],
)
def test_weights_are_a_partition_of_unity(shape, core, halo, half):
    grid = TileGrid.build(shape, core, halo, half)
    np.testing.assert_allclose(weight_sum(grid), 1.0, rtol=0, atol=1e-12)
    cover = np.zeros(shape, int)
    for tile in grid.tiles:
        cover[tile.core] += 1
    assert np.all(cover == 1)  # the cores partition the grid


def test_halo_is_clipped_at_the_edges_and_tiles_are_in_row_major_order():
    grid = TileGrid.build((10, 23), (10, 8), (2, 3), 2)
    assert grid.counts == (1, 3) and len(grid) == 3
    assert [t.index for t in grid.tiles] == [(0, 0), (0, 1), (0, 2)]
    first, middle, last = grid.tiles
    assert first.region == (slice(0, 10), slice(0, 11)) and first.ramps == ((0, 0), (0, 2))
    assert middle.region == (slice(0, 10), slice(5, 19)) and middle.ramps == ((0, 0), (2, 2))
    assert last.region == (slice(0, 10), slice(13, 23)) and last.core[1] == slice(16, 23)
    assert last.shape == (10, 10)
    for tile in grid.tiles:  # the weights never reach outside what the tile read
        for s, r in zip(support(tile), tile.region, strict=True):
            assert r.start <= s.start and s.stop <= r.stop


def test_refuses_layouts_whose_weights_would_not_sum_to_one():
    with pytest.raises(ValueError, match="halo ≥ 4"):
        TileGrid.build((40,), (10,), (2,), 4)
    with pytest.raises(ValueError, match="core ≥ 8"):
        TileGrid.build((40,), (6,), (5,), 4)
    with pytest.raises(ValueError, match="positive"):
        TileGrid.build((40,), (0,), (5,), 0)
    TileGrid.build((6,), (10,), (0,), 4)  # one core covers the axis: no ramp, nothing to hold


def run_tiled(grid: TileGrid, op, data: np.ndarray) -> np.ndarray:
    results = [op(data[tile.region]) for _, tile in each_tile(grid.tiles)]
    return assemble(tuple(slice(0, n) for n in grid.shape), grid.tiles, results)


@pytest.mark.parametrize("half", [0, 3])
def test_tiled_identity_is_the_input_exactly(half):
    data = np.random.default_rng(0).random((9, 31, 26)).astype(np.float32)
    grid = TileGrid.build(data.shape, (4, 10, 7), (3, 4, 3), (0, half, half))
    np.testing.assert_array_equal(run_tiled(grid, lambda x: x.copy(), data), data)


@pytest.mark.parametrize("half", [0, 2])
def test_tiled_blur_equals_the_untiled_blur_in_the_interior(half):
    # A 5-voxel box blur reads 2 voxels around each output: with a halo of 2 + the ramp, every voxel is taken
    # only from tiles whose result there is unaffected by their border (the border itself differs: the filter
    # sees a reflected edge there).
    data = np.random.default_rng(1).random((12, 40, 37)).astype(np.float32)
    grid = TileGrid.build(data.shape, (12, 11, 9), (0, 2 + half, 2 + half), (0, half, half))

    def blur(x):
        return uniform_filter(x, size=(1, 5, 5), mode="reflect")

    whole = blur(data)
    tiled = run_tiled(grid, blur, data)
    interior = (slice(None), slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(tiled[interior], whole[interior], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tiled, whole, rtol=1e-6, atol=1e-6)  # the grid's own border is whole too
    short = TileGrid.build(data.shape, (12, 11, 9), (0, 1, 1), 0)  # too little context shows
    assert np.abs(run_tiled(short, blur, data) - whole).max() > 1e-3


def test_reaching_lists_exactly_the_tiles_with_weight_in_a_region():
    grid = TileGrid.build((10, 70, 53), (4, 20, 20), (2, 5, 5), 2)
    for tile in grid.tiles:
        brute = []
        for number, other in enumerate(grid.tiles):
            held = support(other)
            w = tile_weights(other, held)
            where = tuple(
                slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(tile.core, held, strict=True)
            )
            if all(s.stop > s.start for s in where):
                local = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(where, held, strict=True))
                if w is None or w[local].max() > 0:
                    brute.append(number)
        assert grid.reaching(tile.core) == tuple(brute)
    no_ramps = TileGrid.build((10, 70, 53), (4, 20, 20), (2, 5, 5), 0)
    assert all(no_ramps.reaching(t.core) == (k,) for k, t in enumerate(no_ramps.tiles))


def test_torch_blender_with_leading_axes_and_a_finer_output_grid():
    # Tiles cut on a coarse grid, results on a grid 3× finer (SeReNet: lenslets in, voxels out).
    coarse = TileGrid.build((11, 9), (4, 4), (2, 2), 1)
    fine_truth = torch.rand(2, 5, 33, 27, dtype=torch.float64)
    blender = Blender(tuple(slice(0, 3 * n) for n in coarse.shape), lead=(2, 5), like=fine_truth)
    for tile in coarse.tiles:
        fine = tile.scaled((3, 3))
        blender.add(fine, fine_truth[(..., *fine.region)])
    torch.testing.assert_close(blender.result(), fine_truth)
    fine_grid = [t.scaled((3, 3)) for t in coarse.tiles]
    total = np.zeros((33, 27))
    for t in fine_grid:
        w = tile_weights(t, support(t))
        total[support(t)] += 1.0 if w is None else w
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_each_tile_stops_within_one_tile_and_spans_cover():
    grid = TileGrid.build((30,), (5,), (1,), 0)
    seen = []
    for number, _ in each_tile(grid.tiles, should_stop=lambda: len(seen) >= 2):
        seen.append(number)
    assert seen == [0, 1]
    chunks = list(spans(17, 5))
    assert [(s.start, s.stop) for s in chunks] == [(0, 5), (5, 10), (10, 15), (15, 17)]
    assert list(itertools.chain.from_iterable(range(s.start, s.stop) for s in spans(17, 4))) == list(range(17))
