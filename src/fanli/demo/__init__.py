"""The bundled demo: a Shanghai food and household-goods distributor's 2026 rebate programmes.

Customers, products and agreements are shipped as files in ``data/`` (the customer and product
files use Chinese ERP headers, read through the same presets as a user's files). The sales lines
of 2025 and 2026 (2025 is the baseline of the growth agreement) are generated at run time from a
fixed seed, so every run, on every machine, produces the same lines and the same rebates.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from fanli.agreements.files import agreements_from_data, parse_terms_text
from fanli.agreements.terms import Agreement
from fanli.engine.columnar import calculate
from fanli.engine.facts import SALES_SCHEMA
from fanli.sales.files import Facts, read_customers, read_products

DEMO_SEED = 20260101
YEARS = (2025, 2026)
CENT = Decimal("0.01")

# Lines per customer and month by segment, and list-price discount ranges in percent.
_LINES_PER_MONTH = {
    "批发": (50, 90),
    "商超": (40, 80),
    "便利店": (25, 50),
    "电商": (30, 60),
    "餐饮": (8, 20),
}
_QUANTITY = {
    "批发": (40, 400),
    "商超": (20, 240),
    "便利店": (10, 120),
    "电商": (10, 150),
    "餐饮": (5, 60),
}
_CREDIT_NOTE_SHARE = 0.03
_UNPAID_AFTER = dt.date(2026, 10, 1)  # invoices after this are partly unpaid at year end


def data_path(name: str) -> Path:
    """A bundled demo file."""
    return Path(str(resources.files("fanli.demo").joinpath("data", name)))


@dataclass(frozen=True)
class DemoInputs:
    agreements: list[Agreement]
    facts: Facts


@dataclass(frozen=True)
class DemoOutcome:
    agreements: list[Agreement]
    facts: Facts
    results: pa.Table


def demo_agreements() -> list[Agreement]:
    path = data_path("agreements.yaml")
    text = path.read_text(encoding="utf-8")
    return agreements_from_data(parse_terms_text(text, source=str(path)), source=str(path))


def _days(year: int, month: int) -> int:
    following = dt.date(year + (month == 12), month % 12 + 1, 1)
    return (following - dt.date(year, month, 1)).days


def demo_sales(customers: pa.Table, products: pa.Table, *, seed: int = DEMO_SEED) -> pa.Table:
    """Sales and credit-note lines for 2025 and 2026, the same for the same seed and inputs."""
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    customer_rows = sorted(
        customers.select(["customer_id", "segment"]).to_pylist(), key=lambda row: row["customer_id"]
    )
    product_rows = sorted(
        products.select(["product_id", "标准单价"]).to_pylist(), key=lambda row: row["product_id"]
    )
    prices = [(row["product_id"], Decimal(row["标准单价"])) for row in product_rows]
    columns: dict[str, list[object]] = {name: [] for name in SALES_SCHEMA.names}
    for customer in customer_rows:
        segment = customer["segment"]
        low, high = _LINES_PER_MONTH[segment]
        quantity_low, quantity_high = _QUANTITY[segment]
        growth = rng.uniform(0.85, 1.35)  # 2026 over 2025: the growth agreement has work to do
        favourites = rng.sample(prices, 25)  # each customer buys mostly its own assortment
        sequence = 0
        for year in YEARS:
            scale = 1.0 if year == 2025 else growth
            for month in range(1, 13):
                seasonal = 1.25 if month in (1, 9, 12) else 1.0  # Spring Festival, autumn stocking
                count = round(rng.randint(low, high) * scale * seasonal)
                for _ in range(count):
                    sequence += 1
                    product, price = rng.choice(favourites if rng.random() < 0.8 else prices)
                    quantity = rng.randint(quantity_low, quantity_high)
                    discount = Decimal(rng.randint(0, 12)) / 100
                    is_credit = rng.random() < _CREDIT_NOTE_SHARE
                    if is_credit:
                        quantity = -rng.randint(1, max(2, quantity_low))
                    gross = (price * quantity).quantize(CENT, ROUND_HALF_UP)
                    net = (gross * (1 - discount)).quantize(CENT, ROUND_HALF_UP)
                    invoiced = dt.date(year, month, rng.randint(1, _days(year, month)))
                    ordered = invoiced - dt.timedelta(days=rng.randint(0, 6))
                    paid: dt.date | None = invoiced + dt.timedelta(days=rng.randint(20, 75))
                    if invoiced >= _UNPAID_AFTER and rng.random() < 0.35:
                        paid = None
                    prefix = "HZ" if is_credit else "XS"
                    columns["line_id"].append(
                        f"{prefix}{year}-{customer['customer_id']}-{sequence:05d}"
                    )
                    columns["document_type"].append("credit_note" if is_credit else "invoice")
                    columns["customer_id"].append(customer["customer_id"])
                    columns["product_id"].append(product)
                    columns["order_date"].append(ordered)
                    columns["invoice_date"].append(invoiced)
                    columns["paid_date"].append(paid)
                    columns["quantity"].append(Decimal(quantity))
                    columns["net_amount"].append(net)
                    columns["gross_amount"].append(gross)
                    columns["currency"].append("CNY")
    return pa.Table.from_pydict(columns, schema=SALES_SCHEMA)


def load_demo(*, seed: int = DEMO_SEED) -> DemoInputs:
    customers = read_customers(data_path("customers.csv"))
    products = read_products(data_path("products.csv"))
    sales = demo_sales(customers, products, seed=seed)
    return DemoInputs(demo_agreements(), Facts(sales=sales, customers=customers, products=products))


def run_demo(*, as_of: dt.date | None = None, seed: int = DEMO_SEED) -> DemoOutcome:
    """Load the demo and calculate every agreement."""
    inputs = load_demo(seed=seed)
    facts = inputs.facts
    results = calculate(
        inputs.agreements,
        sales=facts.sales,
        customers=facts.customers,
        products=facts.products,
        as_of=as_of,
    )
    return DemoOutcome(inputs.agreements, facts, results)


def export_demo(directory: Path, *, seed: int = DEMO_SEED) -> list[Path]:
    """Write the demo inputs as files ``fanli calc`` reads (sales with Chinese ERP headers)."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs = load_demo(seed=seed)
    written: list[Path] = []
    for name in ("agreements.yaml", "customers.csv", "products.csv"):
        target = directory / name
        target.write_bytes(data_path(name).read_bytes())
        written.append(target)
    headers = {
        "line_id": "单据编号",
        "document_type": "单据类型",
        "customer_id": "客户编码",
        "product_id": "物料编码",
        "order_date": "订单日期",
        "invoice_date": "开票日期",
        "paid_date": "回款日期",
        "quantity": "数量",
        "net_amount": "不含税金额",
        "gross_amount": "gross_amount",  # before discounts: not 价税合计 (tax-inclusive)
        "currency": "币种",
    }
    sales = inputs.facts.sales
    # Chinese document types, as the ERP writes them, to show the value mapping at work.
    types = [
        "红字发票" if value == "credit_note" else "销售发票"
        for value in sales.column("document_type").to_pylist()
    ]
    exported = sales.set_column(1, "document_type", pa.array(types, pa.string()))
    exported = exported.rename_columns([headers[name] for name in exported.column_names])
    target = directory / "sales.csv"
    pcsv.write_csv(exported, target)
    written.append(target)
    return written
