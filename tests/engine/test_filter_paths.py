"""The engine evaluates filters on few combinations in Python and on many in SQL: both paths must
class every customer and product the same way.

The demo company's agreements use ids, groups, attributes, categories, brands, include and
exclude, pools and gates; forcing the SQL path must change nothing in any result row.
"""

from __future__ import annotations

import datetime as dt

import pytest

from fanli.demo import demo_agreements, load_demo
from fanli.engine import columnar
from fanli.engine.results import rows_from_table


@pytest.mark.parametrize("as_of", [None, dt.date(2026, 8, 15)])
def test_sql_and_python_filter_paths_agree(
    monkeypatch: pytest.MonkeyPatch, as_of: dt.date | None
) -> None:
    facts = load_demo().facts
    agreements = demo_agreements()
    inputs = {
        "sales": facts.sales,
        "customers": facts.customers,
        "products": facts.products,
        "as_of": as_of,
    }
    python_path = rows_from_table(columnar.calculate(agreements, **inputs))
    monkeypatch.setattr(columnar, "PYTHON_FILTER_LIMIT", 0)
    sql_path = rows_from_table(columnar.calculate(agreements, **inputs))
    assert python_path  # the demo pays rebates: an empty comparison would prove nothing
    assert sql_path == python_path
