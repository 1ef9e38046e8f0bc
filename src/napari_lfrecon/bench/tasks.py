"""Build the seeded synthetic data sets of LFRecon-Bench, one :class:`Task` per modality. No Qt.

Each task holds a forward model (or none), and ``train`` / ``validation`` /
``test`` splits of :class:`Item`s (measurement + ground truth). Phantom
families differ between train (and validation) and test (see
:data:`~napari_lfrecon.bench.config.SPLIT_FAMILIES`). Every random draw comes
from one ``numpy`` generator seeded per (task, split, item), so a data set is
identical across runs and independent of which other tasks were built.

Measurements are in photo-electrons (Poisson + Gaussian read noise through the
shared physics operators, :func:`napari_lfrecon.data.simulate.simulate_acquisition`);
ground truths are the phantoms (maximum 1) on the grid of the volume an engine
returns. The diffraction task is a placeholder: ``physics/`` has no
beam-propagation operator yet, so it holds refractive-index ground truths
only and no measurements.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import modalities
from ..data import phantoms
from ..data.simulate import simulate_acquisition
from ..modalities import ForwardModel, forward_model
from ..psf.model import PSF, PSF_FILE_SUFFIX
from .config import SPLIT_FAMILIES, SPLITS, TASKS, BenchConfig


@dataclass
class Item:
    """One sample: ``measurement`` (what an engine gets), ``ground_truth`` (what it should return)."""

    family: str
    seed: int
    measurement: np.ndarray | None
    ground_truth: np.ndarray


@dataclass
class Task:
    """One modality's data set and how to run methods on it.

    ``voxel_size`` is the ground truth's (= the output volume's) voxel size;
    ``data_voxel_size`` the measurement's sampling where it is a volume
    (widefield, anisotropic); ``extra`` is passed to engines as ``Inputs.extra``.
    """

    name: str
    modality: str
    description: str
    voxel_size: tuple[float, float, float]
    splits: dict[str, list[Item]]
    psf: PSF | None = None
    data_voxel_size: tuple[float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def has_measurements(self) -> bool:
        """False for placeholder tasks that hold ground truths only."""
        return all(item.measurement is not None for items in self.splits.values() for item in items)


def item_seed(base: int, task: str, split: str, index: int) -> int:
    """A seed unique to (task, split, item) and stable across Python runs (no ``hash()`` salt)."""
    return int(base + zlib.crc32(f"{task}/{split}/{index}".encode()) % 1_000_000)


# ----------------------------------------------------------------------------- phantoms
def make_phantom(family: str, shape: tuple[int, int, int], voxel: tuple[float, float, float], seed: int) -> np.ndarray:
    """A phantom of ``family`` whose object sizes scale with the field of view (so tiny CI volumes work too)."""
    dz, dy, dx = voxel
    lateral = min(shape[1] * dy, shape[2] * dx)
    depth = shape[0] * dz
    extent = min(lateral, depth) if depth > 2 * dx * 4 else lateral
    volume_um3 = shape[0] * dz * lateral * lateral
    if family == "beads":
        # Beads two lateral voxels apart at least, about one per (3 separations)³: always placeable.
        separation = 2.0 * max(dy, dx)
        n = int(np.clip(volume_um3 / (3.0 * separation) ** 3, 5, 150))
        return phantoms.beads(shape, voxel, n_beads=n, radius_um=0.0, seed=seed, min_separation_um=separation)
    if family == "filaments":
        return phantoms.filaments(shape, voxel, n_filaments=8, radius_um=max(dx, 0.1), seed=seed)
    if family == "bubtub":
        return phantoms.bubtub(
            shape,
            voxel,
            n_bubbles=4,
            n_tubes=4,
            seed=seed,
            bubble_radius_um=(0.12 * extent, 0.3 * extent),
            shell_thickness_um=(1.5 * dx, 3.0 * dx),
            tube_radius_um=(1.0 * dx, 2.0 * dx),
        )
    if family == "zebrafish_like":
        radius = (max(0.04 * lateral, 1.5 * dx), max(0.06 * lateral, 2.5 * dx))
        return phantoms.zebrafish_like(shape, voxel, n_neurons=40, seed=seed, neuron_radius_um=radius)
    raise ValueError(f"unknown phantom family {family!r}; expected one of beads, filaments, bubtub, zebrafish_like")


def _split_items(config: BenchConfig, task: str, make: Callable[[str, int], Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for split in SPLITS:
        families = SPLIT_FAMILIES[split]
        out[split] = [
            make(families[k % len(families)], item_seed(config.seed, task, split, k))
            for k in range(config.items[split])
        ]
    return out


def _acquire(model: ForwardModel, truth: np.ndarray, config: BenchConfig, seed: int, padded: bool) -> np.ndarray:
    """Simulate the noisy measurement of ``truth`` (embedded in the operator's padded volume when ``padded``)."""
    volume = truth
    if padded:
        volume = np.zeros(model.volume_shape, np.float32)
        volume[model.output_slices] = truth
    sim = simulate_acquisition(
        volume,
        model.operator,
        photons=config.photons,
        background_e=config.background_e,
        read_noise_e=config.read_noise_e,
        seed=seed,
        device="cpu",
        clip_negative=True,
    )
    return sim["noisy"]


# ----------------------------------------------------------------------------- one builder per task
def build_widefield(config: BenchConfig) -> Task:
    """3D widefield stacks of a 0.8 NA objective (padded boundary: light from outside the field is modelled)."""
    from ..psf.widefield import widefield_psf

    voxel = config.widefield_voxel
    psf = widefield_psf(
        config.widefield_psf_shape, voxel, na=config.widefield_na, wavelength_um=0.52, immersion_index=1.33
    )
    model = forward_model(psf, config.widefield_shape, boundary="padded")

    def make(family: str, seed: int) -> Item:
        truth = make_phantom(family, config.widefield_shape, voxel, seed)
        return Item(family, seed, _acquire(model, truth, config, seed, padded=True), truth)

    return Task(
        "widefield",
        "widefield",
        f"stack {config.widefield_shape}, voxel {voxel} µm, NA {config.widefield_na}",
        voxel,
        _split_items(config, "widefield", make),
        psf=psf,
        data_voxel_size=voxel,
    )


def build_lfm(config: BenchConfig) -> Task:
    """Raw light fields of the shipped sample's optics (20×/0.5 NA, 9 px per lenslet, 3 voxels per lenslet)."""
    from ..physics.lightfield import views_to_raw
    from ..psf.lfm import LFMOptics, lfm_psf

    optics = LFMOptics(
        magnification=20.0,
        na=0.5,
        immersion_index=1.33,
        wavelength_um=0.52,
        lenslet_pitch_um=58.5,
        lenslet_focal_um=1170.0,
        camera_pixel_um=6.5,
        pixels_per_lenslet=9,
        supersample=3,
    )
    psf = lfm_psf(optics, np.asarray(config.lfm_z_um))
    nnum, s = optics.pixels_per_lenslet, optics.supersample
    shape = (len(config.lfm_z_um), config.lfm_lenslets * s, config.lfm_lenslets * s)
    model = forward_model(psf, (config.lfm_lenslets * nnum,) * 2)

    def make(family: str, seed: int) -> Item:
        truth = make_phantom(family, shape, psf.voxel_size, seed)
        views = _acquire(model, truth, config, seed, padded=False)
        return Item(family, seed, views_to_raw(views, nnum), truth)

    return Task(
        "lfm",
        "lfm",
        f"{config.lfm_lenslets}² lenslets × {nnum}² px, volume {shape}, "
        f"voxel {tuple(round(v, 3) for v in psf.voxel_size)} µm",
        tuple(psf.voxel_size),
        _split_items(config, "lfm", make),
        psf=psf,
    )


def build_xlfm(config: BenchConfig) -> Task:
    """Raw XLFM frames: ``xlfm_lenslets`` hex-packed sub-apertures of a 1.0 NA objective."""
    from ..psf.xlfm import XLFMOptics, default_lenslet_layout, xlfm_psf

    optics = XLFMOptics(
        na=1.0,
        immersion_index=1.33,
        wavelength_um=0.525,
        pixel_um=1.0,
        sensor_shape=config.xlfm_sensor,
        view_size=config.xlfm_view,
        lenslet_pupil_centres=default_lenslet_layout(config.xlfm_lenslets),
    )
    psf = xlfm_psf(optics, np.asarray(config.xlfm_z_um), device="cpu")
    model = forward_model(psf, config.xlfm_sensor)
    shape = tuple(int(n) for n in model.volume_shape)

    def make(family: str, seed: int) -> Item:
        truth = make_phantom(family, shape, psf.voxel_size, seed)  # type: ignore[arg-type]
        return Item(family, seed, _acquire(model, truth, config, seed, padded=False), truth)

    return Task(
        "xlfm",
        "xlfm",
        f"sensor {config.xlfm_sensor}, {config.xlfm_lenslets} views of {config.xlfm_view}, volume {shape}",
        tuple(psf.voxel_size),
        _split_items(config, "xlfm", make),
        psf=psf,
    )


def axial_kernel(factor: int) -> np.ndarray:
    """The z blur of the anisotropic task: a Gaussian with FWHM = ``factor`` voxels (niiv's slice profile)."""
    sigma = factor / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    radius = int(np.ceil(3 * sigma))
    z = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (z / sigma) ** 2)
    return kernel / kernel.sum()


def build_anisotropic(config: BenchConfig) -> Task:
    """Isotropic ground truths; inputs blurred and average-pooled along z by ``aniso_factor`` (``AxialDegradation``)."""
    v = config.aniso_voxel_um
    voxel = (v, v, v)
    factor = config.aniso_factor
    if config.aniso_shape[0] % factor:
        raise ValueError(f"aniso_shape[0]={config.aniso_shape[0]} must be a multiple of aniso_factor={factor}")
    degrade = modalities.get("anisotropic").degradation(factor, kernel=axial_kernel(factor), axis=-3)

    def make(family: str, seed: int) -> Item:
        truth = make_phantom(family, config.aniso_shape, voxel, seed)
        with torch.no_grad():
            low = degrade(torch.as_tensor(truth, dtype=torch.float64)[None])[0].numpy()
        noise = np.random.default_rng(seed).normal(0.0, config.aniso_noise, low.shape)
        return Item(family, seed, (low + noise).astype(np.float32), truth)

    data_voxel = (v * factor, v, v)
    return Task(
        "anisotropic",
        "anisotropic",
        f"volume {config.aniso_shape} at {v} µm, z ×{factor} coarser (Gaussian FWHM {factor} voxels + pool), "
        f"noise σ {config.aniso_noise}",
        voxel,
        _split_items(config, "anisotropic", make),
        data_voxel_size=data_voxel,
        extra={"factor": factor, "axis": -3, "kernel": axial_kernel(factor)},
    )


def build_diffraction(config: BenchConfig) -> Task:
    """Placeholder: refractive-index volumes ``n0 + Δn·phantom`` without measurements (no operator yet)."""
    voxel = config.diffraction_voxel

    def make(family: str, seed: int) -> Item:
        contrast = make_phantom(family, config.diffraction_shape, voxel, seed)
        index = (config.diffraction_n0 + config.diffraction_dn * contrast).astype(np.float32)
        return Item(family, seed, None, index)

    return Task(
        "diffraction",
        "diffraction",
        f"refractive index {config.diffraction_shape}, voxel {voxel} µm, n0 {config.diffraction_n0}, "
        f"Δn ≤ {config.diffraction_dn}",
        voxel,
        _split_items(config, "diffraction", make),
        note="placeholder: ground-truth refractive-index volumes only; physics/ has no beam-propagation operator "
        "yet, so there are no diffraction images and no method runs",
    )


BUILDERS: dict[str, Callable[[BenchConfig], Task]] = {
    "widefield": build_widefield,
    "lfm": build_lfm,
    "xlfm": build_xlfm,
    "anisotropic": build_anisotropic,
    "diffraction": build_diffraction,
}


def build_task(name: str, config: BenchConfig) -> Task:
    """Build task ``name`` (one of :data:`~napari_lfrecon.bench.config.TASKS`)."""
    if name not in BUILDERS:
        raise ValueError(f"unknown benchmark task {name!r}; expected one of {', '.join(TASKS)}")
    return BUILDERS[name](config)


def save_task(task: Task, folder: Path) -> Path:
    """Write a task's items (``<split>_<k>_<family>.npz``, arrays only, no pickle), its PSF and a manifest."""
    folder = Path(folder) / task.name
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "task": task.name,
        "modality": task.modality,
        "description": task.description,
        "voxel_size_um": list(task.voxel_size),
        "data_voxel_size_um": list(task.data_voxel_size) if task.data_voxel_size else None,
        "note": task.note,
        "splits": {},
    }
    if task.psf is not None:
        task.psf.save(folder / f"psf{PSF_FILE_SUFFIX}")
        manifest["psf"] = f"psf{PSF_FILE_SUFFIX}"
    for split, items in task.splits.items():
        entries = []
        for k, item in enumerate(items):
            name = f"{split}_{k}_{item.family}.npz"
            arrays = {"ground_truth": item.ground_truth}
            if item.measurement is not None:
                arrays["measurement"] = item.measurement
            np.savez_compressed(folder / name, **arrays)
            entries.append({"file": name, "family": item.family, "seed": item.seed})
        manifest["splits"][split] = entries
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder
