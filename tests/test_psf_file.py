"""PSF files: exact save/load round trips for every modality, and clear errors for anything else."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lfrecon.psf import PSF, PSF_FILE_SUFFIX
from napari_lfrecon.psf.widefield import widefield_psf


def _assert_same_psf(loaded: PSF, original: PSF) -> None:
    assert loaded.modality == original.modality
    assert loaded.array.dtype == original.array.dtype
    assert loaded.array.shape == original.array.shape
    # Bit-for-bit: compare the raw bytes, not the values (would hide -0.0 vs 0.0, NaN payloads).
    assert loaded.array.tobytes() == original.array.tobytes()
    assert loaded.voxel_size == original.voxel_size
    assert loaded.optics == original.optics
    assert loaded.zernike.dtype == np.float64
    assert loaded.zernike.tobytes() == original.zernike.tobytes()
    assert loaded.z_planes_um.tobytes() == original.z_planes_um.tobytes()
    assert set(loaded.arrays) == set(original.arrays)
    for name, value in original.arrays.items():
        assert loaded.arrays[name].dtype == value.dtype
        assert loaded.arrays[name].shape == value.shape
        assert loaded.arrays[name].tobytes() == value.tobytes()


def _example_psfs() -> list[PSF]:
    rng = np.random.default_rng(7)
    # Floats that do not survive a round trip through a short decimal representation.
    awkward = 0.1 + 0.2
    common = {
        "na": awkward,
        "wavelength_um": 0.52 / 3,
        "immersion_index": 1.33,
        "magnification": 40.0,
        "camera_pixel_um": 6.5,
    }
    return [
        PSF(
            array=rng.random((5, 7, 6), dtype=np.float32),
            modality="widefield",
            voxel_size=(0.3, 1 / 9, 1 / 9),
            optics=dict(common),
            zernike=rng.normal(0, 0.1, 15),
            z_planes_um=(np.arange(5) - 2) * (1 / 3),
        ),
        PSF(
            array=rng.random((9, 4, 5, 5), dtype=np.float32),
            modality="lfm",
            voxel_size=(0.7, 0.2, 0.2),
            optics={
                **common,
                "lenslet_pitch_um": 100.0,
                "lenslet_focal_um": 2500.0 / 7,
                "pixels_per_lenslet": 15,
                "supersample": 3,
                "views_shape": [3, 3],
                "nested": {"grid": [[0.1, 0.2], [1e-300, -2.5e10]], "flag": True, "label": "µ-lens", "none": None},
            },
            zernike=np.array([0.0, 0.0, 0.0, 0.0, 0.05]),
            z_planes_um=np.linspace(-1.4, 1.4, 4),
            arrays={"view_mask": rng.random((9,)) > 0.3},
        ),
        PSF(
            array=rng.random((4, 12, 10), dtype=np.float32),
            modality="xlfm",
            voxel_size=(1.0, 0.35, 0.35),
            optics={**common, "view_size": [8, 8], "n_views": 3},
            zernike=np.zeros(0),
            z_planes_um=np.arange(4) - 2.0,
            arrays={"centres": rng.random((3, 2)) * 10},
        ),
    ]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["widefield", "lfm", "xlfm"])
def test_save_load_round_trip_is_exact(tmp_path, index):
    psf = _example_psfs()[index]
    path = psf.save(tmp_path / f"example{PSF_FILE_SUFFIX}")
    assert path.is_file()
    _assert_same_psf(PSF.load(path), psf)


def test_model_psf_round_trip(tmp_path):
    psf = widefield_psf((6, 9, 8), (0.25, 0.08, 0.08), 1.2, 0.6, 1.33, [0, 0, 0, 0.05, 0, 0.1], magnification=60)
    loaded = PSF.load(psf.save(tmp_path / "model.psf.safetensors"))
    _assert_same_psf(loaded, psf)
    assert loaded.optics["magnification"] == 60.0


def test_loading_a_non_psf_file_raises_value_error(tmp_path):
    text = tmp_path / "notes.psf.safetensors"
    text.write_text("this is not a safetensors file at all")
    with pytest.raises(ValueError, match="not a napari-lfrecon PSF"):
        PSF.load(text)

    from safetensors.numpy import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"weight": np.ones((2, 2), dtype=np.float32)}, str(other), metadata={"engine": "something"})
    with pytest.raises(ValueError, match="not a napari-lfrecon PSF"):
        PSF.load(other)

    with pytest.raises(FileNotFoundError):
        PSF.load(tmp_path / "missing.psf.safetensors")


@pytest.mark.parametrize(
    "modality, shape",
    [("widefield", (4, 4)), ("widefield", (2, 4, 4, 4)), ("lfm", (3, 4, 4)), ("xlfm", (4, 4)), ("xlfm", (1, 2, 4, 4))],
)
def test_wrong_ndim_for_modality_raises_value_error(modality, shape):
    with pytest.raises(ValueError, match=modality):
        PSF(array=np.zeros(shape, dtype=np.float32), modality=modality, voxel_size=(1, 1, 1))


def test_unknown_modality_and_bad_voxel_size_raise_value_error():
    with pytest.raises(ValueError, match="modality"):
        PSF(array=np.zeros((2, 2, 2), dtype=np.float32), modality="confocal", voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match="voxel_size"):
        PSF(array=np.zeros((2, 2, 2), dtype=np.float32), modality="widefield", voxel_size=(1, 0, 1))
