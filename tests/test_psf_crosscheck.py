"""Cross-check the unaberrated widefield PSFs against two independent packages (test dependencies only).

- psf-generator 0.1.0 (EPFL Biomedical Imaging Group, PyPI ``psf-generator``,
  import ``psf_generator``): chirp-z "Cartesian" and Bessel-integral "spherical"
  propagators, scalar and vectorial.
- pyotf 0.0.3 (D. Hoffman, PyPI ``pyotf``): ``HanserPSF``, an FFT of the pupil.

Convention differences undone here:

- Units: psf-generator works in nanometres.
- psf-generator samples ``linspace(-fov/2, fov/2, N)`` with ``fov = N · pix_size``,
  so its real pixel pitch is ``pix_size · N / (N - 1)``; its z planes are
  ``linspace(-(step·n)//2, (step·n)//2, n)``, a step of ``step · n / (n - 1)``
  for odd ``n``. We compute ours on those effective steps (odd sizes keep the
  centre sample at ``N // 2`` in both).
- psf-generator's scalar Cartesian propagator divides the pupil by ``cos θ``
  unless ``sz_correction=False``; the spherical one needs ``cos_factor=True`` to
  be the same uniform-in-``k`` pupil as our scalar model. Its vectorial
  propagator with ``apod_factor=True`` is the Richards–Wolf ``1/sqrt(cos θ)``
  pupil; we sum the intensities of x and y input polarisation (unpolarised).
- pyotf's default z range ``(arange(n) - (n + 1)//2) · dz`` is off-centre for odd
  ``n``; we pass ``zrange`` explicitly. Its ``condition="none"``,
  ``vec_corr="none"`` is our scalar model; ``condition="sine"``,
  ``vec_corr="total"`` (six polarisation pupils summed) is our vectorial one.
  Its pupil is a hard-edged disc on the FFT grid (``dk = 1 / (size · res)``), so
  it is computed on a 256² field and the centre cropped.
- Normalisation: each stack is divided by its own maximum (the in-focus peak);
  no pixel integration on either side (point samples).
- Index mismatch: psf-generator's ``gibson_lanni=True`` (coverslip and immersion
  at design values) has the same pupil phase as ours, ``k d (n_s cos θ_s -
  n_i cos θ_i)`` plus defocus, but it propagates with ``k n_s`` while using the
  immersion-side direction sines, so its x and z coordinates are the physical
  ones times ``n_i / n_s``; and its ``z = 0`` is the stage position of the
  paraxial focus, ``-d (n_i/n_s - 1)`` in ours. We evaluate ours at
  ``(n_s / n_i) ×`` its coordinates, shifted by that focal shift.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lfrecon.psf.widefield import widefield_psf_torch

N_XY, N_Z = 65, 5  # odd: the centre sample is index N // 2 in every package
DX_NM, DZ_NM, WAVELENGTH_NM = 30.0, 300.0, 600.0
WATER = {"na": 0.9, "index": 1.33}
OIL = {"na": 1.3, "index": 1.518}


def fwhm(profile: np.ndarray, spacing: float) -> float:
    """Full width at half maximum of a single-peaked 1-D profile, linearly interpolated at both flanks."""
    p = np.asarray(profile, dtype=np.float64)
    peak = int(np.argmax(p))
    half = p[peak] / 2
    right = peak
    while p[right + 1] > half:
        right += 1
    left = peak
    while p[left - 1] > half:
        left -= 1
    right_pos = right + (p[right] - half) / (p[right] - p[right + 1])
    left_pos = left - (p[left] - half) / (p[left] - p[left - 1])
    return (right_pos - left_pos) * spacing


def compare(theirs: np.ndarray, ours: np.ndarray, dx_um: float, *, centred: bool = True) -> dict[str, float]:
    """Peak-normalised max and relative L2 differences and both lateral FWHMs in the centre plane.

    ``centred``: also require their maximum at ``shape // 2`` (true of an unaberrated focus).
    """
    a = np.asarray(theirs, dtype=np.float64) / theirs.max()
    b = np.asarray(ours, dtype=np.float64) / ours.max()
    if centred:
        assert np.unravel_index(int(np.argmax(a)), a.shape) == tuple(s // 2 for s in a.shape)
    cz, cy = a.shape[0] // 2, a.shape[1] // 2
    return {
        "max": float(np.abs(a - b).max()),
        "l2": float(np.linalg.norm(a - b) / np.linalg.norm(b)),
        "fwhm_theirs": fwhm(a[cz, cy], dx_um),
        "fwhm_ours": fwhm(b[cz, cy], dx_um),
    }


def ours(optics: dict[str, float], dz_um: float, dx_um: float, model: str) -> np.ndarray:
    """Our unaberrated PSF on the given grid, float64."""
    return widefield_psf_torch(
        (N_Z, N_XY, N_XY),
        (dz_um, dx_um, dx_um),
        optics["na"],
        WAVELENGTH_NM / 1000,
        optics["index"],
        dtype=torch.float64,
        model=model,
    ).numpy()


# -------------------------------------------------------------- psf-generator
def psf_generator_stack(propagator_class, optics: dict[str, float], **options) -> np.ndarray:
    """Intensity ``(Z, Y, X)`` from a psf-generator propagator (summed over field components)."""
    propagator = propagator_class(
        n_pix_pupil=129,
        n_pix_psf=N_XY,
        wavelength=WAVELENGTH_NM,
        na=optics["na"],
        pix_size=DX_NM,
        defocus_step=DZ_NM,
        n_defocus=N_Z,
        n_i=optics["index"],
        n_i0=optics["index"],
        **options,
    )
    field = propagator.compute_focus_field()  # (Z, components, Y, X)
    return (field.abs() ** 2).sum(dim=1).numpy().astype(np.float64)


# psf-generator's effective steps (µm): linspace over N points spanning N steps.
PSFGEN_DX_UM = DX_NM / 1000 * N_XY / (N_XY - 1)
PSFGEN_DZ_UM = DZ_NM / 1000 * N_Z / (N_Z - 1)


@pytest.mark.parametrize("propagator", ["ScalarCartesianPropagator", "ScalarSphericalPropagator"])
def test_scalar_matches_psf_generator(propagator):
    propagators = pytest.importorskip("psf_generator.propagators")
    options = {"sz_correction": False} if propagator == "ScalarCartesianPropagator" else {"cos_factor": True}
    theirs = psf_generator_stack(getattr(propagators, propagator), WATER, **options)
    result = compare(theirs, ours(WATER, PSFGEN_DZ_UM, PSFGEN_DX_UM, "scalar"), PSFGEN_DX_UM)
    # Measured: max 0.3 % / 0.2 % of the peak, relative L2 0.3 % / 0.2 %.
    assert result["max"] < 1e-2
    assert result["l2"] < 1e-2
    assert result["fwhm_ours"] == pytest.approx(result["fwhm_theirs"], rel=5e-3)


def test_vectorial_matches_psf_generator():
    propagators = pytest.importorskip("psf_generator.propagators")
    theirs = sum(
        psf_generator_stack(propagators.VectorialCartesianPropagator, OIL, apod_factor=True, e0x=ex, e0y=ey)
        for ex, ey in ((1.0, 0.0), (0.0, 1.0))
    )
    result = compare(theirs, ours(OIL, PSFGEN_DZ_UM, PSFGEN_DX_UM, "vectorial"), PSFGEN_DX_UM)
    # Measured: max 0.4 % of the peak, relative L2 0.5 %.
    assert result["max"] < 1e-2
    assert result["l2"] < 1.5e-2
    assert result["fwhm_ours"] == pytest.approx(result["fwhm_theirs"], rel=5e-3)


def test_index_mismatch_matches_psf_generator_gibson_lanni():
    propagators = pytest.importorskip("psf_generator.propagators")
    na, n_i, n_s, shift_planes = 1.2, 1.518, 1.33, 4
    ratio = n_s / n_i
    dz_um, dx_um = ratio * PSFGEN_DZ_UM, ratio * PSFGEN_DX_UM  # psf-generator's steps in physical units
    # Depth chosen so that the paraxial focal shift d (n_i/n_s - 1) is a whole number of our planes.
    depth_um = shift_planes * dz_um / (n_i / n_s - 1)
    optics = {"na": na, "index": n_i}
    theirs = psf_generator_stack(
        propagators.ScalarCartesianPropagator, optics, sz_correction=False, gibson_lanni=True, z_p=depth_um * 1000,
        n_s=n_s, n_g=1.5, n_g0=1.5,
    )  # fmt: skip
    n_planes = 2 * (shift_planes + N_Z) + 1
    stack = widefield_psf_torch(
        (n_planes, N_XY, N_XY), (dz_um, dx_um, dx_um), na, WAVELENGTH_NM / 1000, n_i, dtype=torch.float64,
        sample_index=n_s, depth_um=depth_um,
    ).numpy()  # fmt: skip
    # Their plane j (z = j · step about the paraxial focus) is our plane centre - shift + j.
    first = n_planes // 2 - shift_planes - N_Z // 2
    result = compare(theirs, stack[first : first + N_Z], dx_um, centred=False)
    # Measured: max 0.36 % of the peak, relative L2 0.37 % (0.15 % with both pupils at 256 samples).
    assert result["max"] < 1e-2
    assert result["l2"] < 1e-2


# ---------------------------------------------------------------------- pyotf
@pytest.mark.parametrize(
    ("model", "optics", "vec_corr", "condition"),
    [("scalar", WATER, "none", "none"), ("vectorial", OIL, "total", "sine")],
)
def test_matches_pyotf(model, optics, vec_corr, condition):
    otf = pytest.importorskip("pyotf.otf")
    size, dx_um, dz_um = 256, DX_NM / 1000, DZ_NM / 1000
    hanser = otf.HanserPSF(
        WAVELENGTH_NM / 1000,
        optics["na"],
        optics["index"],
        dx_um,
        size,
        zrange=(np.arange(N_Z) - N_Z // 2) * dz_um,
        vec_corr=vec_corr,
        condition=condition,
    )
    half = N_XY // 2
    theirs = hanser.PSFi[:, size // 2 - half : size // 2 + half + 1, size // 2 - half : size // 2 + half + 1]
    result = compare(theirs, ours(optics, dz_um, dx_um, model), dx_um)
    # Measured: max 0.44 % / 0.41 % of the peak, relative L2 0.9 % / 0.5 % (pyotf's hard-edged
    # pupil pixels dominate: 0.12 % / 0.15 % max with a 512² field).
    assert result["max"] < 1e-2
    assert result["l2"] < 2e-2
    assert result["fwhm_ours"] == pytest.approx(result["fwhm_theirs"], rel=1e-2)
