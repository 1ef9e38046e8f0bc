"""Sizes, seeds and settings of LFRecon-Bench: one :class:`BenchConfig` for CI (``QUICK``), one for the full run."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Phantom families per split. Test families never appear in training: the test measures generalisation to
#: unseen structure (sparse beads and thin fibres → hollow shells, tubes and a larva-like brain).
SPLIT_FAMILIES: dict[str, tuple[str, ...]] = {
    "train": ("beads", "filaments"),
    "validation": ("beads", "filaments"),
    "test": ("bubtub", "zebrafish_like"),
}
SPLITS: tuple[str, ...] = tuple(SPLIT_FAMILIES)
#: Every task the bench knows, in table order.
TASKS: tuple[str, ...] = ("widefield", "lfm", "xlfm", "anisotropic", "diffraction")


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines one benchmark run (all lengths in µm, all sizes in voxels)."""

    name: str
    seed: int = 20261121
    #: Items per split (each item cycles through its split's families).
    items: dict[str, int] = field(default_factory=lambda: {"train": 4, "validation": 2, "test": 4})
    #: Richardson–Lucy baselines run at these fixed iteration counts.
    rl_iterations: tuple[int, ...] = (10, 50)
    #: Budget of a learned engine's training run (``<name>-train``) on the training split.
    train_steps: int = 300
    train_minutes: float = 3.0
    photons: float = 300.0
    background_e: float = 1.0
    read_noise_e: float = 1.5
    widefield_shape: tuple[int, int, int] = (32, 96, 96)
    widefield_voxel: tuple[float, float, float] = (0.3, 0.1, 0.1)
    widefield_psf_shape: tuple[int, int, int] = (24, 48, 48)
    widefield_na: float = 0.8
    lfm_lenslets: int = 24
    lfm_z_um: tuple[float, ...] = tuple(float(z) for z in range(-16, 17, 2))
    xlfm_sensor: tuple[int, int] = (256, 256)
    xlfm_view: tuple[int, int] = (40, 40)
    xlfm_lenslets: int = 19
    xlfm_z_um: tuple[float, ...] = tuple(float(z) for z in range(-12, 13, 2))
    #: Anisotropic task: isotropic ground truth, z degraded by ``aniso_factor`` (blur + average-pool).
    aniso_shape: tuple[int, int, int] = (64, 96, 96)
    aniso_voxel_um: float = 0.2
    aniso_factor: int = 4
    aniso_noise: float = 0.01
    #: Diffraction task (placeholder): refractive-index volumes, background index and peak contrast.
    diffraction_shape: tuple[int, int, int] = (32, 64, 64)
    diffraction_voxel: tuple[float, float, float] = (0.2, 0.1, 0.1)
    diffraction_n0: float = 1.33
    diffraction_dn: float = 0.03


#: Tiny version for CI (well under a minute on 2 cores).
QUICK = BenchConfig(
    name="quick",
    items={"train": 2, "validation": 2, "test": 2},
    rl_iterations=(5,),
    train_steps=3,
    train_minutes=0.2,
    widefield_shape=(12, 32, 32),
    widefield_psf_shape=(11, 21, 21),
    lfm_lenslets=10,
    lfm_z_um=(-8.0, -4.0, 0.0, 4.0, 8.0),
    xlfm_sensor=(144, 144),
    xlfm_view=(24, 24),
    xlfm_lenslets=7,
    xlfm_z_um=(-6.0, -3.0, 0.0, 3.0, 6.0),
    aniso_shape=(16, 32, 32),
    diffraction_shape=(8, 16, 16),
)

#: The run whose table is in BENCHMARKS.md.
FULL = BenchConfig(name="full")
