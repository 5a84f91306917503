"""Sales import: read users' sales, customer and product files into the canonical fact tables.

``fanli.sales.files`` reads CSV (UTF-8 or GBK/GB18030), Excel and Parquet; ``fanli.sales.mapping``
matches the files' headers to Fanli fields. See README.md.
"""

from fanli.sales.files import (
    Facts,
    InputFileError,
    RowIssue,
    read_customers,
    read_facts,
    read_products,
    read_sales,
)
from fanli.sales.mapping import ColumnMapping, load_mapping

__all__ = [
    "ColumnMapping",
    "Facts",
    "InputFileError",
    "RowIssue",
    "load_mapping",
    "read_customers",
    "read_facts",
    "read_products",
    "read_sales",
]
