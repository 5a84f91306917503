"""The canonical shape of the sales facts and of the customer and product dimensions.

Readers (``fanli.sales.files``) turn users' files into these Arrow shapes; the engine and the
reference calculator read nothing else. Amounts and quantities are decimals with at most
``FACT_SCALE`` places, never floats. Ids may be text or integers; filters compare their text.
"""

from __future__ import annotations

import pyarrow as pa

from fanli.kit.errors import InputError
from fanli.kit.money import FACT_SCALE

FACT_DECIMAL = pa.decimal128(18, FACT_SCALE)

SALES_SCHEMA = pa.schema(
    [
        ("line_id", pa.string()),
        ("document_type", pa.string()),
        ("customer_id", pa.string()),
        ("product_id", pa.string()),
        ("order_date", pa.date32()),
        ("invoice_date", pa.date32()),
        ("paid_date", pa.date32()),
        ("quantity", FACT_DECIMAL),
        ("net_amount", FACT_DECIMAL),
        ("gross_amount", FACT_DECIMAL),
        ("currency", pa.string()),
    ]
)
REQUIRED_SALES_COLUMNS = (
    "line_id",
    "customer_id",
    "product_id",
    "quantity",
    "net_amount",
)
MEASURE_COLUMNS = ("quantity", "net_amount", "gross_amount")
DATE_COLUMNS = ("order_date", "invoice_date", "paid_date")

# Built-in dimension columns; any other column of the file is an attribute.
CUSTOMER_BUILTINS = ("customer_id", "name", "group")
PRODUCT_BUILTINS = ("product_id", "name", "category", "brand")


def check_fact_types(schema: pa.Schema, *, source: str = "sales") -> None:
    """Refuse floating-point measures: they cannot hold money exactly."""
    for name in MEASURE_COLUMNS:
        if name in schema.names:
            column_type = schema.field(name).type
            if pa.types.is_floating(column_type):
                raise InputError(
                    f"column is {column_type}, a binary float; amounts must be decimals",
                    file=source,
                    field=name,
                )
