"""Qt-free controllers and computation behind the widgets (the "model/controller" half of the GUI).

Nothing in this package imports Qt, napari, magicgui or superqt, ever (a test
imports every module here in a fresh interpreter and checks ``sys.modules``):
the widgets in :mod:`napari_lfrecon.gui` are thin views over these, and the
code here is tested without a display. Modules may import ``engines``, ``psf``,
``physics``, ``metrics``, ``jobs`` and ``io``. Among them:

* :mod:`.niiv_zoom_geometry`: which region of a niiv field to decode at which
  sampling for a 2-D view (pure numbers).
* :mod:`.niiv_zoom`: the zoom's request bookkeeping (generations, stale results
  dropped) and the decode generator the worker layer runs.
* :mod:`.psf_editor`: the PSF editor's computation (presets, PSF building,
  panels, OTF) without the form.
* :mod:`.reconstruct`: the Reconstruct widget's decisions (engine choices,
  default input, time series, camera, output) and the all-frames batch run.
* :mod:`.calibrate`: the Calibrate widget's optics parsing, reports,
  rectification and the LFM PSF computation.
* :mod:`.streams`: callback-reporting computations turned into generators.
"""
