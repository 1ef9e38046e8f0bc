"""Real GUV light field: calibrate the lenslet grid, rectify, build the LFM PSF, reconstruct with RL, save MIPs.

Usage: ``python scripts/guv_lightfield_demo.py [DATA_DIR] [OUT_PNG]`` (DATA_DIR defaults to
``../shared/data/real/lightfield_GUV_experimental``). About 30 s on 2 CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

import napari_lfrecon
from napari_lfrecon.psf.calibrate_lightfield import calibrate_lightfield, rectified_views
from napari_lfrecon.psf.lfm import LFMOptics, lfm_psf


def main(data_dir: str = "../shared/data/real/lightfield_GUV_experimental", out: str = "guv_mips.png") -> None:
    """Run the whole chain and write a figure of the rectified frame, the centre view and MIPs / slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(data_dir)
    raw = tifffile.imread(folder / "Lightfield_GUVExperim1.tif")
    white = tifffile.imread(folder / "Radiometry_GUVExperim1.tif")
    dark = tifffile.imread(folder / "DarkFrame_GUVExperim1.tif")
    calibration = calibrate_lightfield(white, dark, nominal_pitch_px=100.0 / 6.5)
    print(calibration.to_dict())
    nnum = calibration.pixels_per_lenslet()
    views = rectified_views(raw, calibration, dark=dark)
    # Optics from the data set's metadata.txt; the rectified pixel is pitch / Nnum.
    optics = LFMOptics(
        magnification=60,
        na=1.2,
        immersion_index=1.35,
        wavelength_um=0.593,
        lenslet_pitch_um=100.0,
        lenslet_focal_um=2500.0,
        camera_pixel_um=100.0 / nnum,
        pixels_per_lenslet=nnum,
        supersample=3,
    )
    psf = lfm_psf(optics, np.arange(-7.0, 8.0, 1.0))
    volume = napari_lfrecon.reconstruct("rl", views, psf, iterations=15).data
    fig, axes = plt.subplots(2, 4, figsize=(16, 8))
    axes[0, 0].imshow(views[(nnum // 2) * nnum + nnum // 2], cmap="gray")
    axes[0, 0].set_title("centre view")
    axes[0, 1].imshow(volume.max(0), cmap="magma")
    axes[0, 1].set_title("xy MIP")
    axes[0, 2].imshow(volume.max(1), cmap="magma", aspect=psf.voxel_size[0] / psf.voxel_size[1])
    axes[0, 2].set_title("xz MIP")
    axes[0, 3].imshow(volume.max(2), cmap="magma", aspect=psf.voxel_size[0] / psf.voxel_size[2])
    axes[0, 3].set_title("yz MIP")
    for ax, z in zip(axes[1], (3, 7, 11, 14), strict=True):
        ax.imshow(volume[z], cmap="magma")
        ax.set_title(f"z = {psf.z_planes_um[z]:+.0f} µm")
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
