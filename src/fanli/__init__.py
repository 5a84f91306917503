"""Fanli (返利): rebate management that is exact, explainable and compliant by construction."""

__version__ = "0.1.0"
