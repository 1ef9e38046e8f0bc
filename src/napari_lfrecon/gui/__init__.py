"""napari glue: the worker layer, dock widgets, sample data, reader and writer.

Importing this package imports neither Qt nor napari: every npe2 contribution
points at a leaf module (``gui.reconstruct_widget``, ``gui._sample_data``, ...)
so opening one contribution loads only what it needs.
"""
