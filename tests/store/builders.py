"""Small literal inputs for store tests: customer, product and sales files, agreement terms."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fanli.agreements.terms import Agreement

CUSTOMERS = [
    # code, legal name, 统一社会信用代码 (valid check characters), segment, region
    ("C1", "上海华东食品贸易有限公司", "91350100M000100Y43", "批发", "华东"),
    ("C2", "北京京北商贸有限公司", "91110000600037341L", "零售", "华北"),
    ("C3", "广州南粤连锁有限公司", "", "零售", "华南"),
]
PRODUCTS = [("P1", "矿泉水550ml", "饮料", "清泉"), ("P2", "苏打水", "饮料", "清泉")]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def customers_file(directory: Path, rows: Sequence[Sequence[Any]] = CUSTOMERS) -> Path:
    return write_csv(
        directory / "customers.csv",
        ("客户编码", "客户名称", "统一社会信用代码", "客户分类", "区域"),
        rows,
    )


def products_file(directory: Path, rows: Sequence[Sequence[Any]] = PRODUCTS) -> Path:
    return write_csv(directory / "products.csv", ("物料编码", "物料名称", "品类", "品牌"), rows)


def sales_file(directory: Path, name: str, lines: Sequence[Sequence[Any]]) -> Path:
    """Lines: (line id, customer, product, invoice date, quantity, net amount)."""
    return write_csv(
        directory / name,
        ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"),
        lines,
    )


def percent_agreement(
    code: str = "A1",
    *,
    rate: str = "2",
    start: str = "2026-01-01",
    end: str = "2027-01-01",
    effective_from: str | None = None,
    tiers: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Agreement:
    """A quarterly percent-of-net programme for every customer."""
    data: dict[str, Any] = {
        "id": code,
        "name": f"programme {code}",
        "term": {"start": start, "end": end},
        "rebate": {
            "form": "percent",
            "basis": "net",
            "tiers": tiers or [{"from": "0", "rate": rate}],
        },
        "periods": {"kind": "quarter"},
        **extra,
    }
    if effective_from:
        data["effective_from"] = effective_from
    return Agreement.model_validate(data)
