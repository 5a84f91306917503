"""Shared kernel: money, periods, errors. Imports nothing from the rest of Fanli."""
