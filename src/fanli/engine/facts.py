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
# Columns the engine cannot do without; the others have defaults (docs/calculation.md).
REQUIRED_SALES_COLUMNS = ("customer_id", "product_id", "quantity", "net_amount")
MEASURE_COLUMNS = ("quantity", "net_amount", "gross_amount")
DATE_COLUMNS = ("order_date", "invoice_date", "paid_date")

# Built-in dimension columns; any other column of the file is an attribute.
CUSTOMER_BUILTINS = ("customer_id", "name", "group")
PRODUCT_BUILTINS = ("product_id", "name", "category", "brand")


def check_fact_types(schema: pa.Schema, *, source: str = "sales") -> None:
    """Refuse measures the engine could not hold exactly: binary floats, and decimals with more
    than ``FACT_SCALE`` places (scaling them to 10**-4 units would round silently)."""
    for name in MEASURE_COLUMNS:
        if name in schema.names:
            column_type = schema.field(name).type
            if pa.types.is_floating(column_type):
                raise InputError(
                    f"column is {column_type}, a binary float; amounts must be decimals",
                    file=source,
                    field=name,
                )
            if pa.types.is_decimal(column_type) and column_type.scale > FACT_SCALE:
                raise InputError(
                    f"column is {column_type}: more than {FACT_SCALE} decimal places",
                    file=source,
                    field=name,
                )
