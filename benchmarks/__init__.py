"""Benchmarks of the Fanli calculation engine (``python -m benchmarks.engine``)."""
