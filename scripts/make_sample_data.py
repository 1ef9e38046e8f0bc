"""Make the shipped samples in sample_data/ at the repository's top level (seeded, reproducible).

Run: python scripts/make_sample_data.py [--only NAME ...]
Each sample NAME gets NAME.tif (measurement in photo-electrons), NAME.psf.safetensors,
NAME_ground_truth.tif (on the grid of the volume RL returns) and NAME.json (how it was made).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_lfrecon.data import phantoms
from napari_lfrecon.data.simulate import simulate_acquisition
from napari_lfrecon.io.tiff import write_tiff
from napari_lfrecon.modalities import forward_model
from napari_lfrecon.psf.model import PSF_FILE_SUFFIX

OUT = Path(__file__).resolve().parents[1] / "sample_data"
SEED = 20261121


def _save(name, measurement, data_scale, psf, truth, info):
    OUT.mkdir(parents=True, exist_ok=True)
    write_tiff(OUT / f"{name}.tif", measurement.astype(np.float32), voxel_size=data_scale, metadata={"sample": name})
    psf.save(OUT / f"{name}{PSF_FILE_SUFFIX}")
    write_tiff(OUT / f"{name}_ground_truth.tif", truth.astype(np.float32), voxel_size=psf.voxel_size)
    info = dict(info, data_scale=list(data_scale), seed=SEED, command="python scripts/make_sample_data.py")
    (OUT / f"{name}.json").write_text(json.dumps(info, indent=2))
    print(f"{name}: measurement {measurement.shape}, volume {truth.shape}, {psf.describe()}")


def _acquire(volume, psf, data_shape, photons, background_e, read_noise_e):
    model = forward_model(psf, data_shape, boundary="padded")
    padded = np.zeros(model.volume_shape, np.float32)
    padded[model.output_slices] = volume
    sim = simulate_acquisition(
        padded,
        model.operator,
        photons=photons,
        background_e=background_e,
        read_noise_e=read_noise_e,
        seed=SEED,
        clip_negative=True,
    )
    return sim


def make_widefield():
    from napari_lfrecon.psf.widefield import widefield_psf

    voxel = (0.3, 0.1, 0.1)
    shape = (40, 128, 128)
    optics = dict(na=0.8, wavelength_um=0.52, immersion_index=1.33)
    psf = widefield_psf((32, 64, 64), voxel, **optics, magnification=40.0, camera_pixel_um=4.0)
    truth = phantoms.beads(shape, voxel, n_beads=40, radius_um=0.0, seed=SEED, margin_um=2.0)
    sim = _acquire(truth, psf, shape, photons=300.0, background_e=2.0, read_noise_e=1.5)
    info = {"photons_peak": 300.0, "background_e": 2.0, "read_noise_e": 1.5, "scale": sim["scale"], **optics}
    _save("widefield", sim["noisy"], voxel, psf, truth, info)


def make_xlfm():
    from napari_lfrecon.psf.xlfm import XLFMOptics, xlfm_psf

    optics = XLFMOptics(
        na=1.0, immersion_index=1.33, wavelength_um=0.525, pixel_um=1.0, sensor_shape=(384, 384), view_size=(56, 56)
    )
    z_planes = np.arange(-15.0, 16.0, 2.0)
    psf = xlfm_psf(optics, z_planes)
    dz, dy, dx = psf.voxel_size
    volume_shape = (len(z_planes), 56, 56)
    truth = phantoms.zebrafish_like(volume_shape, (dz, dy, dx), n_neurons=80, seed=SEED)
    model = forward_model(psf, optics.sensor_shape)
    sim = simulate_acquisition(
        truth, model.operator, photons=400.0, background_e=1.0, read_noise_e=1.5, seed=SEED, clip_negative=True
    )
    info = {"photons_peak": 400.0, "background_e": 1.0, "read_noise_e": 1.5, "scale": sim["scale"]}
    _save("xlfm", sim["noisy"], (dy, dx), psf, truth, info)


def make_lfm():
    from napari_lfrecon.psf.lfm import LFMOptics, lfm_psf

    optics = LFMOptics(**LFM_OPTICS)
    z_planes = np.asarray(LFM_Z_PLANES)
    psf = lfm_psf(optics, z_planes)
    n_lenslets = LFM_LENSLETS
    s = int(psf.optics.get("supersample", 1))
    nnum = int(psf.optics["pixels_per_lenslet"])
    dz, dy, dx = psf.voxel_size
    volume_shape = (len(z_planes), n_lenslets * s, n_lenslets * s)
    truth = phantoms.bubtub(
        volume_shape,
        (dz, dy, dx),
        n_bubbles=6,
        n_tubes=6,
        seed=SEED,
        bubble_radius_um=(3.0, 7.0),
        shell_thickness_um=(0.8, 1.5),
        tube_radius_um=(0.6, 1.2),
    )
    raw_shape = (n_lenslets * nnum, n_lenslets * nnum)
    model = forward_model(psf, raw_shape)
    sim = simulate_acquisition(
        truth, model.operator, photons=500.0, background_e=1.0, read_noise_e=1.5, seed=SEED, clip_negative=True
    )
    from napari_lfrecon.physics.lightfield import views_to_raw

    raw = views_to_raw(sim["noisy"], nnum)
    sensor_pixel = optics.camera_pixel_um / optics.magnification
    info = {
        "photons_peak": 500.0,
        "background_e": 1.0,
        "read_noise_e": 1.5,
        "scale": sim["scale"],
        "lenslets": n_lenslets,
    }
    _save("lfm", raw, (sensor_pixel, sensor_pixel), psf, truth, info)


LFM_OPTICS = dict(
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
LFM_Z_PLANES = list(np.arange(-20.0, 21.0, 2.0))
LFM_LENSLETS = 32

#: Anisotropic sample: an isotropic phantom (the ground truth) blurred along z (Gaussian, FWHM = the factor)
#: and average-pooled by the factor (niiv's model, ``AxialDegradation``), plus Gaussian noise.
ANISO_SHAPE = (128, 128, 128)
ANISO_VOXEL_UM = 0.2
ANISO_FACTOR = 8
ANISO_NOISE = 0.01


def make_anisotropic():
    from napari_lfrecon.bench.tasks import axial_kernel, make_phantom
    from napari_lfrecon.physics.axial import AxialDegradation

    v, factor = ANISO_VOXEL_UM, ANISO_FACTOR
    truth = make_phantom("bubtub", ANISO_SHAPE, (v, v, v), SEED)
    degrade = AxialDegradation(factor, axis=-3, kernel=axial_kernel(factor))
    with torch.no_grad():
        low = degrade(torch.as_tensor(truth, dtype=torch.float64)[None])[0].numpy()
    noisy = (low + np.random.default_rng(SEED).normal(0.0, ANISO_NOISE, low.shape)).astype(np.float32)
    data_scale = (v * factor, v, v)
    write_tiff(OUT / "anisotropic.tif", noisy, voxel_size=data_scale, metadata={"sample": "anisotropic"})
    # the ground truth as uint16 (4 MB instead of 8): value = code · scale, quantisation step 1/65535 of the max
    scale = float(truth.max()) / 65535.0
    codes = np.round(truth / scale).astype(np.uint16)
    write_tiff(OUT / "anisotropic_ground_truth.tif", codes, voxel_size=(v, v, v))
    info = {
        "family": "bubtub",
        "anisotropy": factor,
        "axial_blur": f"Gaussian, FWHM {factor} ground-truth voxels, then average-pooled by {factor}",
        "noise_sigma": ANISO_NOISE,
        "voxel_size": [v, v, v],
        "data_scale": list(data_scale),
        "ground_truth_scale": scale,
        "niiv_weights": "niiv_anisotropic.safetensors",
        "seed": SEED,
        "command": "python scripts/make_sample_data.py --only anisotropic",
    }
    (OUT / "anisotropic.json").write_text(json.dumps(info, indent=2))
    print(f"anisotropic: measurement {noisy.shape} at {data_scale} µm, ground truth {truth.shape}")


MAKERS = {"widefield": make_widefield, "xlfm": make_xlfm, "lfm": make_lfm, "anisotropic": make_anisotropic}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=sorted(MAKERS))
    args = parser.parse_args()
    torch.manual_seed(SEED)
    for name in args.only or MAKERS:
        started = time.perf_counter()
        MAKERS[name]()
        print(f"  {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
