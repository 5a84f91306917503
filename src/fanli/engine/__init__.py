"""The calculation: agreement terms + sales facts -> results per agreement x beneficiary x period.

``calculate`` (in ``fanli.engine.columnar``) is the columnar engine, DuckDB SQL compiled from the
terms. ``fanli.engine.reference`` is the row-by-row oracle with the same semantics
(docs/calculation.md). The engine imports neither the database layer nor the interfaces.
"""
