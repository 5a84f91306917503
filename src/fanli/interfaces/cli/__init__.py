"""The ``fanli`` command line (Typer): ``fanli calc`` computes from files; ``fanli demo``."""
