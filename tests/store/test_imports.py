"""Imports: atomic, idempotent, validated row by row; sales facts immutable; batches voided."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from openpyxl import load_workbook
from sqlalchemy import event, func, select

from fanli.audit.models import AuditEvent
from fanli.customers.models import Customer, GroupMembership
from fanli.kit.errors import InputError
from fanli.ledger.dimensions import customer_table
from fanli.products.models import Product
from fanli.sales.files import InputFileError
from fanli.sales.mapping import ColumnMapping, mapping_from_data
from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.service import (
    BatchError,
    IdempotencyConflictError,
    ImportOutcome,
    ReturnLeft,
    import_customers,
    import_products,
    import_sales,
    returns_left_by_void,
    void_batch,
    write_issue_report,
)
from store.builders import (
    PRODUCTS,
    customers_file,
    last_event,
    products_file,
    sales_file,
    staff,
    write_csv,
)
from store.conftest import NOW, Store

PRODUCT_ONE = PRODUCTS[0]


def _count(store: Store, column: object) -> int:
    with store.work() as session:
        return int(session.scalar(select(func.count(column))) or 0)


def _masters(store: Store, directory: Path) -> None:
    with store.work() as session:
        import_customers(
            session, store.facts, customers_file(directory), actor=staff("ann"), now=NOW
        )
        import_products(session, store.facts, products_file(directory), actor=staff("ann"), now=NOW)


def test_customers_with_chinese_headers(store: Store, tmp_path: Path) -> None:
    with store.work() as session:
        outcome = import_customers(
            session, store.facts, customers_file(tmp_path), actor=staff("ann"), now=NOW
        )
    assert (outcome.rows, outcome.inserted, outcome.updated) == (3, 3, 0)
    with store.work() as session:
        c1 = session.scalar(select(Customer).where(Customer.code == "C1"))
        assert c1 is not None
        assert (c1.legal_name, c1.credit_code, c1.segment, c1.region) == (
            "上海华东食品贸易有限公司",
            "91350100M000100Y43",
            "批发",
            "华东",
        )
        event = session.scalars(select(AuditEvent)).one()
        assert (event.type, event.actor, event.outcome) == (
            "customers.imported",
            "ann",
            {"rows": 3, "inserted": 3, "updated": 0},
        )


def test_a_bad_customer_file_lists_every_bad_row_and_stores_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = customers_file(
        tmp_path,
        [
            ("C1", "上海华东食品贸易有限公司", "91350100M000100Y44", "批发", "华东"),
            ("C2", "", "91110000600037341L", "零售", "华北"),
            ("C3", "广州南粤连锁有限公司", "91110000600037341L", "零售", "华南"),
            ("C4", "名" * 201, "", "批" * 65, "华南"),
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_customers(session, store.facts, path, actor=staff("ann"), now=NOW)
    issues = [(i.row, i.field, i.message) for i in raised.value.issues]
    # the columns as the file names them; every problem also said in the reader's language
    assert issues == [
        (2, "统一社会信用代码", "check character is '4', GB 32100-2015 requires '3'"),
        (3, "客户名称", "a customer needs its legal entity name"),
        (4, "统一社会信用代码", "91110000600037341L is also on row 3"),
        (5, "客户名称", "201 characters; at most 200 are allowed"),
        (5, "客户分类", "65 characters; at most 64 are allowed"),
    ]
    assert all(issue.said is not None for issue in raised.value.issues)
    assert str(raised.value).startswith(
        f"file {path}, row 2, field '统一社会信用代码': check character"
    )
    assert _count(store, Customer.id) == 0
    assert _count(store, ImportBatch.id) == 0
    assert _count(store, AuditEvent.seq) == 0

    write_issue_report(raised.value, tmp_path / "problems.csv")
    lines = (tmp_path / "problems.csv").read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "file,row,field,reason"
    assert lines[3] == f"{path},4,统一社会信用代码,91110000600037341L is also on row 3"
    write_issue_report(raised.value, tmp_path / "problems.xlsx")
    sheet = load_workbook(tmp_path / "problems.xlsx").active
    assert sheet is not None
    assert [cell.value for cell in sheet[3]] == [
        str(path),
        3,
        "客户名称",
        "a customer needs its legal entity name",
    ]


def test_the_same_file_again_adds_nothing(store: Store, tmp_path: Path) -> None:
    path = customers_file(tmp_path)
    with store.work() as session:
        first = import_customers(session, store.facts, path, actor=staff("ann"), now=NOW)
    with store.work() as session:
        again = import_customers(session, store.facts, path, actor=staff("bob"), now=NOW)
    assert again.already_imported
    assert again.batch_id == first.batch_id
    assert _count(store, Customer.id) == 3
    assert _count(store, ImportBatch.id) == 1
    assert _count(store, AuditEvent.seq) == 1


def test_an_idempotency_key_replays_and_refuses_another_file(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    first = sales_file(tmp_path, "s1.csv", [("L1", "C1", "P1", "2026-02-01", "1", "100.00")])
    other = sales_file(tmp_path, "s2.csv", [("L2", "C1", "P1", "2026-02-01", "1", "100.00")])
    with store.work() as session:
        done = import_sales(
            session, store.facts, first, actor=staff("api"), now=NOW, idempotency_key="k-1"
        )
    with store.work() as session:
        replay = import_sales(
            session, store.facts, first, actor=staff("api"), now=NOW, idempotency_key="k-1"
        )
    assert (replay.batch_id, replay.already_imported) == (done.batch_id, True)
    with store.work() as session, pytest.raises(IdempotencyConflictError, match="k-1"):
        import_sales(
            session, store.facts, other, actor=staff("api"), now=NOW, idempotency_key="k-1"
        )
    assert _count(store, ImportBatch.id) == 3  # customers, products, one sales batch


def test_customer_updates_and_group_membership(store: Store, tmp_path: Path) -> None:
    header = ("customer_id", "name", "group", "segment")
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(tmp_path / "a.csv", header, [("C1", "甲公司", "G1", "批发")]),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        outcome = import_customers(
            session,
            store.facts,
            write_csv(
                tmp_path / "b.csv",
                header,
                [("C1", "甲公司", "G2", "零售"), ("C2", "乙公司", "", "批发")],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    assert (outcome.inserted, outcome.updated) == (1, 1)
    with store.work() as session:
        # the engine's view: the snapshot written by the import, and the groups in eras (a
        # line is judged by the group held on its date, ADR 0012)
        dimension = customer_table(session, store.facts)
    today = NOW.date()
    columns = ["customer_id", "segment", "group", "valid_from", "valid_to"]
    assert [tuple(row.values()) for row in dimension.select(columns).to_pylist()] == [
        ("C1", "零售", "G1", None, today),
        ("C1", "零售", "G2", today, None),
        ("C2", "批发", None, None, None),
    ]
    with store.work() as session:
        customer = session.scalars(select(Customer).where(Customer.code == "C1")).one()
        assert customer.segment == "零售"
        memberships = session.scalars(select(GroupMembership).order_by(GroupMembership.id)).all()
        # the first group holds for all earlier dates; the change starts today
        assert [(m.valid_from, m.valid_to) for m in memberships] == [
            (dt.date.min, NOW.date()),
            (NOW.date(), None),
        ]
    # Ten days later C1 leaves its group and C2 joins G1: the stretches outside a group are
    # eras without one, so every day of each customer is covered once.
    later = NOW + dt.timedelta(days=10)
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(
                tmp_path / "c.csv",
                header,
                [("C1", "甲公司", "", "零售"), ("C2", "乙公司", "G1", "批发")],
            ),
            actor=staff("ann"),
            now=later,
        )
    with store.work() as session:
        dimension = customer_table(session, store.facts)
    assert [tuple(row.values()) for row in dimension.select(columns).to_pylist()] == [
        ("C1", "零售", "G1", None, today),
        ("C1", "零售", "G2", today, later.date()),
        ("C1", "零售", None, later.date(), None),
        ("C2", "批发", None, None, later.date()),
        ("C2", "批发", "G1", later.date(), None),
    ]


def test_only_rows_that_change_count_as_updated(store: Store, tmp_path: Path) -> None:
    """Importing the master again counts as updated only the customers whose values or group
    change; the others are left as they are (and not written again)."""
    header = ("customer_id", "name", "group", "segment", "等级")
    rows = [
        ("C1", "甲公司", "G1", "批发", "A"),
        ("C2", "乙公司", "", "零售", "B"),
        ("C3", "丙公司", "G1", "批发", ""),
        ("C4", "丁公司", "", "批发", "C"),
    ]

    updates: list[int] = []  # the rows each UPDATE of a customer wrote

    def written(_conn: Any, _cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if statement.startswith("UPDATE customer "):
            updates.append(len(parameters) if rest[-1] else 1)  # executemany: one set per row

    event.listen(store.engine, "before_cursor_execute", written)

    def load(name: str, lines: list[tuple[str, ...]]) -> tuple[int, int, int]:
        updates.clear()
        with store.work() as session:
            outcome = import_customers(
                session,
                store.facts,
                write_csv(tmp_path / name, header, lines),
                actor=staff("ann"),
                now=NOW,
            )
            event = last_event(session, "customers.imported")
        assert event.outcome == {
            "rows": outcome.rows,
            "inserted": outcome.inserted,
            "updated": outcome.updated,
        }
        return outcome.rows, outcome.inserted, outcome.updated

    assert load("first.csv", rows) == (4, 4, 0)
    # the same customers in another file (so not the same batch): nothing changes
    assert load("again.csv", [*rows[1:], rows[0]]) == (4, 0, 0)
    assert updates == []  # nor is any row written again
    # C1's segment, C2's attribute, C3's group; C4 as it was; C5 new
    assert load(
        "changed.csv",
        [
            ("C1", "甲公司", "G1", "零售", "A"),
            ("C2", "乙公司", "", "零售", "B+"),
            ("C3", "丙公司", "G2", "批发", ""),
            rows[3],
            ("C5", "戊公司", "", "批发", ""),
        ],
    ) == (5, 1, 3)
    assert sum(updates) == 2  # C1 and C2; C3's group is a membership, not the customer's row
    with store.work() as session:
        stored = {
            customer.code: (customer.segment, customer.attributes)
            for customer in session.scalars(select(Customer))
        }
    assert stored == {
        "C1": ("零售", {"等级": "A"}),
        "C2": ("零售", {"等级": "B+"}),
        "C3": ("批发", {}),
        "C4": ("批发", {"等级": "C"}),
        "C5": ("批发", {}),
    }


def test_an_earlier_master_file_comes_again_to_set_its_values_back(
    store: Store, tmp_path: Path
) -> None:
    """Recognised as already imported while it is the master's latest word; after a later file
    changed some customers, the same file comes again as a batch of its own and sets them
    back. A sales file, by contrast, is one batch however often it comes."""
    header = ("customer_id", "name", "group")
    first = write_csv(tmp_path / "a.csv", header, [("C1", "甲公司", "G1"), ("C2", "乙公司", "G1")])
    changed = write_csv(tmp_path / "b.csv", header, [("C2", "乙新公司", "G2")])

    def load(path: Path) -> tuple[int, bool, int, int]:
        with store.work() as session:
            done = import_customers(session, store.facts, path, actor=staff("ann"), now=NOW)
        return done.batch_id, done.already_imported, done.inserted, done.updated

    batch, *rest = load(first)
    assert rest == [False, 2, 0]
    assert load(first) == (batch, True, 0, 0)  # the latest word: nothing to do
    assert load(changed)[1:] == (False, 0, 1)
    again = tmp_path / "restore.csv"
    again.write_bytes(first.read_bytes())
    restored = load(again)
    assert restored[0] > batch
    assert restored[1:] == (False, 0, 1)  # C2 set back
    assert load(first) == (restored[0], True, 0, 0)
    with store.work() as session:
        c2 = session.scalars(select(Customer).where(Customer.code == "C2")).one()
        assert c2.legal_name == "乙公司"
        assert customer_table(session, store.facts).to_pylist()[1]["group"] == "G1"
        kinds = session.execute(
            select(ImportBatch.kind, func.count()).group_by(ImportBatch.kind)
        ).all()
    assert dict(kinds) == {"customers": 3}


def test_a_file_with_fewer_columns_leaves_the_others_as_stored(
    store: Store, tmp_path: Path
) -> None:
    header = (
        "客户编码",
        "客户名称",
        "统一社会信用代码",
        "客户分类",
        "区域",
        "集团",
        "合同类型",
        "等级",
    )
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(
                tmp_path / "full.csv",
                header,
                [("C3", "丙公司", "91310000MA1FL0000N", "商超", "华东", "G1", "KA", "A")],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    # A rename only: the credit code, segment, region, group and attributes are not in the file.
    with store.work() as session:
        outcome = import_customers(
            session,
            store.facts,
            write_csv(tmp_path / "rename.csv", ("客户编码", "客户名称"), [("C3", "丙新公司")]),
            actor=staff("ann"),
            now=NOW,
        )
    assert (outcome.inserted, outcome.updated) == (0, 1)
    # An attribute column with an empty cell removes that attribute; a new one is added.
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(tmp_path / "attrs.csv", ("客户编码", "合同类型", "星级"), [("C3", "", "5")]),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        customer = session.scalars(select(Customer).where(Customer.code == "C3")).one()
        assert (
            customer.legal_name,
            customer.credit_code,
            customer.segment,
            customer.region,
            customer.attributes,
        ) == ("丙新公司", "91310000MA1FL0000N", "商超", "华东", {"等级": "A", "星级": "5"})
        memberships = session.scalars(select(GroupMembership)).all()
        assert [(m.valid_from, m.valid_to) for m in memberships] == [(dt.date.min, None)]
        # the engine's view, from the snapshot the imports wrote
        dimension = customer_table(session, store.facts)
    assert dimension.select(
        ["customer_id", "name", "segment", "group", "等级", "星级"]
    ).to_pylist() == [
        {
            "customer_id": "C3",
            "name": "丙新公司",
            "segment": "商超",
            "group": "G1",
            "等级": "A",
            "星级": "5",
        }
    ]
    # A column the file has, with an empty cell, clears the stored value.
    with store.work() as session:
        import_customers(
            session,
            store.facts,
            write_csv(tmp_path / "clear.csv", ("客户编码", "区域"), [("C3", "")]),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        customer = session.scalars(select(Customer).where(Customer.code == "C3")).one()
        assert (customer.region, customer.segment) == (None, "商超")


def test_a_new_customer_needs_a_name_column_and_every_problem_is_reported_at_once(
    store: Store, tmp_path: Path
) -> None:
    with store.work() as session:
        import_customers(
            session, store.facts, customers_file(tmp_path), actor=staff("ann"), now=NOW
        )
    path = write_csv(
        tmp_path / "partial.csv",
        ("客户编码", "区域"),
        [("C1", "华南"), ("", "华北"), ("C9", "华西")],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_customers(session, store.facts, path, actor=staff("ann"), now=NOW)
    # the reader's problem (an empty code) and the import's (a new customer without a name)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (3, "客户编码", "客户编码 is empty"),
        (
            4,
            "name",
            "customer C9 is new and needs its legal entity name, but the file has no column for it",
        ),
    ]
    with store.work() as session:
        assert session.scalars(select(Customer.region).order_by(Customer.code)).all() == [
            "华东",
            "华北",
            "华南",
        ]


def test_a_products_file_without_names_keeps_the_stored_names(store: Store, tmp_path: Path) -> None:
    with store.work() as session:
        import_products(session, store.facts, products_file(tmp_path), actor=staff("ann"), now=NOW)
    with store.work() as session:
        import_products(
            session,
            store.facts,
            write_csv(
                tmp_path / "cat.csv", ("物料编码", "品类"), [("P1", "新品类"), ("P9", "饮料")]
            ),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        stored = session.execute(
            select(Product.code, Product.name, Product.category, Product.brand).order_by(
                Product.code
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        ("P1", PRODUCT_ONE[1], "新品类", PRODUCT_ONE[3]),
        *[tuple(row) for row in PRODUCTS[1:]],
        ("P9", None, "饮料", None),
    ]


def test_sales_go_to_an_immutable_parquet_file(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    path = sales_file(
        tmp_path,
        "sales.csv",
        [
            ("L2", "C2", "P2", "2026-03-05", "3", "300.50"),
            ("L1", "C1", "P1", "2026-01-10", "10", "1000.00"),
            ("R1", "C1", "P1", "2026-01-20", "-2", "-200.00"),  # a return
        ],
    )
    with store.work() as session:
        outcome = import_sales(session, store.facts, path, actor=staff("ann"), now=NOW)
    with store.work() as session:
        batch = session.get(ImportBatch, outcome.batch_id)
        assert batch is not None
        assert (batch.kind, batch.rows, batch.status) == ("sales", 3, "active")
        assert (str(batch.first_date), str(batch.last_date)) == ("2026-01-10", "2026-03-05")
        assert batch.facts_file is not None
        stored = store.facts.path(batch.facts_file)
    rows = duckdb.sql(
        f"SELECT line_id, net_amount, quantity FROM '{stored}'"
    ).fetchall()  # sorted by invoice date
    assert rows == [
        ("L1", Decimal("1000.0000"), Decimal("10.0000")),
        ("R1", Decimal("-200.0000"), Decimal("-2.0000")),
        ("L2", Decimal("300.5000"), Decimal("3.0000")),
    ]


def test_lines_dated_after_the_import_are_stored_and_counted(store: Store, tmp_path: Path) -> None:
    """An ERP may export documents dated ahead: they are stored like any other, and the import
    says how many and until when (the runs count them as of their day)."""
    _masters(store, tmp_path)
    path = sales_file(
        tmp_path,
        "sales.csv",
        [
            ("L1", "C1", "P1", "2026-11-27", "1", "100.00"),  # the day of the import
            ("L2", "C1", "P1", "2026-11-28", "1", "100.00"),
            ("L3", "C2", "P2", "2027-01-15", "1", "100.00"),
        ],
    )
    with store.work() as session:
        outcome = import_sales(session, store.facts, path, actor=staff("ann"), now=NOW)
    assert (outcome.rows, outcome.dated_ahead, outcome.latest) == (3, 2, dt.date(2027, 1, 15))
    with store.work() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.type == "sales.batch.imported")
        ).one()
        assert event.outcome["dated_ahead"] == 2
    on_time = sales_file(tmp_path, "more.csv", [("L4", "C1", "P1", "2026-11-01", "1", "1.00")])
    with store.work() as session:
        outcome = import_sales(session, store.facts, on_time, actor=staff("ann"), now=NOW)
    assert (outcome.dated_ahead, outcome.latest) == (0, None)


def test_bad_sales_lines_are_all_reported_and_nothing_stored(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    with store.work() as session:
        first = import_sales(
            session,
            store.facts,
            sales_file(tmp_path, "first.csv", [("L1", "C1", "P1", "2026-01-10", "1", "10.00")]),
            actor=staff("ann"),
            now=NOW,
        )
    bad = sales_file(
        tmp_path,
        "second.csv",
        [
            ("L1", "C1", "P1", "2026-01-11", "1", "10.00"),  # line id stored already
            ("L2", "C9", "P1", "2026-01-11", "1", "10.00"),  # unknown customer
            ("L3", "C1", "P1", "2026-01-11", "1", "10.001234"),  # too many places
        ],
    )
    batches, events = _count(store, ImportBatch.id), _count(store, AuditEvent.seq)
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, bad, actor=staff("ann"), now=NOW)
    fields = [(issue.row, issue.field) for issue in raised.value.issues]
    assert (3, "customer_id") in fields
    assert (4, "net_amount") in fields
    assert (_count(store, ImportBatch.id), _count(store, AuditEvent.seq)) == (batches, events)
    # Fixing the two cell errors leaves the duplicate line, reported with its row.
    fixed = sales_file(
        tmp_path,
        "third.csv",
        [
            ("L1", "C1", "P1", "2026-01-11", "1", "10.00"),
            ("L2", "C1", "P1", "2026-01-11", "1", "1"),
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, fixed, actor=staff("ann"), now=NOW)
    assert [(i.row, i.field) for i in raised.value.issues] == [(2, "line_id")]
    assert raised.value.issues[0].message == f"line L1 is already stored, in batch {first.batch_id}"
    assert len(list(store.facts.root.glob("*.parquet"))) == 1


def test_void_a_batch(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    path = sales_file(tmp_path, "s.csv", [("L1", "C1", "P1", "2026-01-10", "1", "10.00")])
    with store.work() as session:
        outcome = import_sales(session, store.facts, path, actor=staff("ann"), now=NOW)
    with store.work() as session, pytest.raises(InputError, match="needs a reason"):
        void_batch(session, store.facts, outcome.batch_id, reason=" ", actor=staff("ann"), now=NOW)
    with store.work() as session:
        void_batch(
            session,
            store.facts,
            outcome.batch_id,
            reason="wrong month",
            actor=staff("bob"),
            now=NOW,
        )
    with store.work() as session:
        batch = session.get(ImportBatch, outcome.batch_id)
        assert batch is not None
        assert (batch.status, batch.voided_by, batch.void_reason) == (
            "voided",
            "bob",
            "wrong month",
        )
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert event is not None
        assert (event.type, event.inputs) == ("sales.batch.voided", {"reason": "wrong month"})
    with store.work() as session, pytest.raises(BatchError, match="voided already"):
        void_batch(
            session, store.facts, outcome.batch_id, reason="again", actor=staff("bob"), now=NOW
        )
    with store.work() as session, pytest.raises(BatchError) as raised:
        import_sales(session, store.facts, path, actor=staff("ann"), now=NOW)
    # the file by its name: an upload's copy lies in a temporary folder
    assert str(raised.value).startswith(
        f"file {path.name} was imported as batch {outcome.batch_id}, which was voided;"
    )
    # The voided line may come again in a corrected file.
    corrected = sales_file(tmp_path, "s2.csv", [("L1", "C1", "P1", "2026-02-10", "1", "10.00")])
    with store.work() as session:
        assert not import_sales(
            session, store.facts, corrected, actor=staff("ann"), now=NOW
        ).already_imported


def test_a_masters_batch_is_not_voided_and_says_why(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    with store.work() as session:
        batches = dict(session.execute(select(ImportBatch.kind, ImportBatch.id)).all())
    events = _count(store, AuditEvent.seq)
    for kind in ("customers", "products"):
        with store.work() as session, pytest.raises(BatchError) as raised:
            void_batch(
                session, store.facts, batches[kind], reason="wrong", actor=staff("bob"), now=NOW
            )
        assert str(raised.value) == (
            f"batch {batches[kind]} holds {kind}, not sales: only a sales batch can be voided; "
            f"import the corrected {kind} again instead"
        )
    with store.work() as session:
        assert set(session.scalars(select(ImportBatch.status))) == {"active"}
    assert _count(store, AuditEvent.seq) == events


def test_a_void_names_the_returns_it_leaves_without_their_sale(
    store: Store, tmp_path: Path
) -> None:
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    rows = [
        ("L1", "C1", "P1", "2026-01-10", "3", "300"),
        ("L2", "C1", "P1", "2026-01-11", "1", "50"),
    ]
    with store.work() as session:
        sales = import_sales(
            session,
            store.facts,
            write_csv(tmp_path / "s1.csv", header, rows),
            actor=staff("ann"),
            now=NOW,
        )
        returns = import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "s2.csv",
                (*header, "原发票行"),
                [
                    ("R2", "C1", "P1", "2026-01-21", "-1", "-100", "L1"),
                    ("R1", "C1", "P1", "2026-01-20", "-1", "-100", "L1"),
                    ("R3", "C1", "P1", "2026-01-22", "-1", "-50", ""),  # names no line
                ],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        # The returns' own batch leaves nothing behind; nor does a batch that is not sales.
        assert returns_left_by_void(session, store.facts, returns.batch_id) == []
        assert returns_left_by_void(session, store.facts, 1) == []
        voided = void_batch(
            session, store.facts, sales.batch_id, reason="wrong file", actor=staff("bob"), now=NOW
        )
        left = [ReturnLeft(returns.batch_id, "R1"), ReturnLeft(returns.batch_id, "R2")]
        assert voided.returns_left == left
        assert returns_left_by_void(session, store.facts, sales.batch_id) == left
        # The void's audit event says which returns it leaves, as the void's caller is told.
        event = last_event(session, "sales.batch.voided")
        assert (event.outcome["returns_left"], event.outcome["returns_left_listed"]) == (
            2,
            [{"batch": returns.batch_id, "line": "R1"}, {"batch": returns.batch_id, "line": "R2"}],
        )
        void_batch(
            session, store.facts, returns.batch_id, reason="with it", actor=staff("bob"), now=NOW
        )
        assert returns_left_by_void(session, store.facts, sales.batch_id) == []


def test_a_files_return_problems_come_in_one_report_with_its_other_problems(
    store: Store, tmp_path: Path
) -> None:
    """A return naming no stored line had been reported only once the file's other problems
    were fixed; the clean lines' return checks now come with them."""
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    with store.work() as session:
        import_sales(
            session,
            store.facts,
            write_csv(tmp_path / "s1.csv", header, [("L1", "C1", "P1", "2026-01-10", "3", "300")]),
            actor=staff("ann"),
            now=NOW,
        )
    bad = write_csv(
        tmp_path / "s2.csv",
        (*header, "原发票行"),
        [
            ("R1", "C1", "P1", "2026-01-20", "-1", "-100", "NOPE-1"),  # names no line
            ("S2", "C1", "P1", "2026-13-10", "1", "10", ""),  # no date
            ("R3", "C1", "P1", "2026-01-21", "-1", "-1", "S2"),  # names the undated line
            ("R4", "C2", "P1", "2026-01-22", "-1", "-100", "L1"),  # another customer's line
            ("R5", "C1", "P1", "2026-01-23", "-5", "-500", "L1"),  # more than L1 sold
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, bad, actor=staff("ann"), now=NOW)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (2, "原发票行", "original line NOPE-1 is not stored"),
        (
            3,
            "invoice_date",
            "invoice_date '2026-13-10' is not a date (use 2026-03-31, 2026/3/31 or 2026年3月31日)",
        ),
        (5, "原发票行", "original line L1 was sold to customer C1, not to C2"),
        (5, "原发票行", "the returns of line L1 come to a quantity of 6, more than the 3 it sold"),
        (6, "原发票行", "the returns of line L1 come to a quantity of 6, more than the 3 it sold"),
    ]
    with store.work() as session:
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 3  # masters + s1


def test_products(store: Store, tmp_path: Path) -> None:
    with store.work() as session:
        import_products(session, store.facts, products_file(tmp_path), actor=staff("ann"), now=NOW)
    with store.work() as session:
        rows = session.execute(select(Product.code, Product.category, Product.brand)).all()
    assert sorted(rows) == [("P1", "饮料", "清泉"), ("P2", "饮料", "清泉")]


def test_a_return_may_name_the_invoice_line_it_reverses(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    with store.work() as session:
        import_sales(
            session,
            store.facts,
            write_csv(tmp_path / "s1.csv", header, [("L1", "C1", "P1", "2026-01-10", "3", "300")]),
            actor=staff("ann"),
            now=NOW,
        )
    linked = (*header, "原发票行")
    bad = write_csv(
        tmp_path / "s2.csv",
        linked,
        [
            ("R1", "C1", "P1", "2026-01-20", "-1", "-100", "L1"),  # fine: reverses a stored line
            ("R2", "C1", "P1", "2026-01-21", "-1", "-100", "L9"),  # no such line
            ("R3", "C1", "P1", "2026-01-22", "1", "100", "L1"),  # not a return
            ("R4", "C1", "P1", "2026-01-23", "-1", "-100", "R1"),  # a return, of this file
            ("CN1", "C1", "P1", "2026-01-23", "-1", "-100", ""),  # a credit note of its own
            ("R5", "C1", "P1", "2026-01-24", "-1", "-100", "CN1"),  # names a credit note
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, bad, actor=staff("ann"), now=NOW)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (3, "原发票行", "original line L9 is not stored"),
        (4, "原发票行", "only a return (negative net amount) names an original line"),
        (5, "原发票行", "original line R1 is a return itself"),
        # that alone: not also that its returns take back more than the -1 it sold
        (7, "原发票行", "original line CN1 is a return itself"),
    ]
    good = write_csv(
        tmp_path / "s3.csv", linked, [("R1", "C1", "P1", "2026-01-20", "-1", "-100", "L1")]
    )
    with store.work() as session:
        outcome = import_sales(session, store.facts, good, actor=staff("ann"), now=NOW)
        name = session.get(ImportBatch, outcome.batch_id).facts_file  # type: ignore[union-attr]
    assert duckdb.sql(
        f"SELECT line_id, original_line_id FROM '{store.facts.path(str(name))}'"
    ).fetchall() == [("R1", "L1")]
    # L1 sold 3 and R1 took 1 back: the returns of a line together take back at most 3.
    more = write_csv(
        tmp_path / "s4.csv",
        linked,
        [
            ("R5", "C1", "P1", "2026-01-24", "-2", "-200", "L1"),
            ("R6", "C1", "P1", "2026-01-25", "-1", "-100", "L1"),
            ("R7", "C1", "P1", "2026-01-26", "-1", "-100", "R7"),
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, more, actor=staff("ann"), now=NOW)
    over = "the returns of line L1 come to a quantity of 4, more than the 3 it sold"
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (2, "原发票行", over),
        (3, "原发票行", over),
        (4, "原发票行", "a return names itself as its original line"),
    ]
    enough = write_csv(
        tmp_path / "s5.csv", linked, [("R5", "C1", "P1", "2026-01-24", "-2", "-200", "L1")]
    )
    with store.work() as session:
        assert import_sales(session, store.facts, enough, actor=staff("ann"), now=NOW).rows == 1


def test_a_return_takes_back_part_of_its_own_customers_sale(store: Store, tmp_path: Path) -> None:
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    with store.work() as session:
        import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "s1.csv", header, [("L1", "C1", "P1", "2026-01-10", "5", "500.05")]
            ),
            actor=staff("ann"),
            now=NOW,
        )
    returns = write_csv(
        tmp_path / "s2.csv",
        (*header, "原发票行"),
        [
            ("R1", "C2", "P1", "2026-01-20", "-1", "-100.01", "L1"),  # another customer
            ("R2", "C1", "P2", "2026-01-20", "-1", "-100.01", "L1"),  # another product
            ("R3", "C1", "P1", "2026-01-09", "-1", "-100.01", "L1"),  # before the sale
            ("R4", "C1", "P1", "2026-01-20", "-1", "-90000.00", "L1"),  # more than invoiced
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, returns, actor=staff("ann"), now=NOW)
    refunded = "the returns of line L1 come to 90300.03, more than the 500.05 it was invoiced at"
    assert [(i.row, i.message) for i in raised.value.issues] == [
        (2, "original line L1 was sold to customer C1, not to C2"),
        (2, refunded),
        (3, "original line L1 is of product P1, not of P2"),
        (3, refunded),
        (4, "the return is dated 2026-01-09, before original line L1 (2026-01-10)"),
        (4, refunded),
        (5, refunded),
    ]
    assert all(issue.said is not None for issue in raised.value.issues)
    with store.work() as session:
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 3
    # and in the sale's own currency: a line with none stated counts in every agreement
    with store.work() as session:
        import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "yuan.csv",
                (*header, "currency"),
                [("L2", "C1", "P1", "2026-01-10", "5", "500.05", "CNY")],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    dollars = write_csv(
        tmp_path / "s3.csv",
        (*header, "原发票行", "currency"),
        [
            ("R5", "C1", "P1", "2026-01-20", "-1", "-100.01", "L2", "USD"),
            ("R6", "C1", "P1", "2026-01-20", "-1", "-100.01", "L1", "USD"),  # L1 states none
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, dollars, actor=staff("ann"), now=NOW)
    assert [(i.row, i.message) for i in raised.value.issues] == [
        (2, "original line L2 is in CNY, not in USD"),
        (3, "original line L1 is in no stated currency, not in USD"),
    ]


def test_a_product_value_longer_than_its_field_is_refused_by_row(
    store: Store, tmp_path: Path
) -> None:
    path = products_file(tmp_path, [("P1", "可乐", "饮料", "牌"), ("P2", "水", "饮" * 121, "牌")])
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_products(session, store.facts, path, actor=staff("ann"), now=NOW)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (3, "品类", "121 characters; at most 120 are allowed")
    ]
    assert _count(store, ImportBatch.id) == 0


def test_a_file_with_a_header_and_no_rows_is_refused(store: Store, tmp_path: Path) -> None:
    for kind, importer, header in (
        ("customers", import_customers, ("customer_id", "name")),
        ("products", import_products, ("product_id", "name")),
    ):
        empty = write_csv(tmp_path / f"{kind}.csv", header, [])
        with store.work() as session, pytest.raises(InputError) as raised:
            importer(session, store.facts, empty, actor=staff("ann"), now=NOW)
        assert str(raised.value) == f"file {empty}: the file has no {kind}"
    assert _count(store, ImportBatch.id) == 0
    assert _count(store, AuditEvent.seq) == 0


def test_a_file_read_through_a_wrong_mapping_can_come_again_through_the_right_one(
    store: Store, tmp_path: Path
) -> None:
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net", "gross")
    path = write_csv(
        tmp_path / "s.csv", header, [("L1", "C1", "P1", "2026-01-10", "1", "100.00", "113.00")]
    )
    wrong = mapping_from_data({"net_amount": "gross"}, source="wrong.yaml")
    right = mapping_from_data({"net_amount": "net", "gross_amount": "gross"}, source="right.yaml")

    def imported(mapping: ColumnMapping) -> ImportOutcome:
        with store.work() as session:
            return import_sales(
                session, store.facts, path, actor=staff("ann"), now=NOW, mapping=mapping
            )

    first = imported(wrong)
    assert imported(wrong) == ImportOutcome(first.batch_id, BatchKind.SALES, 1, True)
    with store.work() as session:
        void_batch(
            session,
            store.facts,
            first.batch_id,
            reason="net read from gross",
            actor=staff("ann"),
            now=NOW,
        )
    with pytest.raises(BatchError, match="through a corrected column mapping"):
        imported(wrong)
    second = imported(right)
    assert (second.already_imported, second.rows) == (False, 1)
    with store.work() as session:
        name = session.get(ImportBatch, second.batch_id).facts_file  # type: ignore[union-attr]
    assert duckdb.sql(
        f"SELECT net_amount, gross_amount FROM '{store.facts.path(str(name))}'"
    ).fetchall() == [(Decimal("100.0000"), Decimal("113.0000"))]


def test_the_imports_own_checks_name_rows_as_the_file_has_them(
    store: Store, tmp_path: Path
) -> None:
    _masters(store, tmp_path)
    with store.work() as session:
        first = import_sales(
            session,
            store.facts,
            sales_file(tmp_path, "first.csv", [("L1", "C1", "P1", "2026-01-10", "1", "10.00")]),
            actor=staff("ann"),
            now=NOW,
        )
    again = tmp_path / "again.csv"
    again.write_text(
        "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
        "L2,C1,P1,2026-01-11,1,10.00\n"
        "\n"
        ",,,,,\n"
        "L1,C1,P1,2026-01-11,1,10.00\n",
        encoding="utf-8",
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, again, actor=staff("ann"), now=NOW)
    assert [(i.row, i.message) for i in raised.value.issues] == [
        (5, f"line L1 is already stored, in batch {first.batch_id}")
    ]


def test_one_pass_reports_lines_already_stored_with_the_files_own_problems(
    store: Store, tmp_path: Path
) -> None:
    """A file with problems of its own and lines stored already: every one in one report,
    in the file's row order, so that one correction is enough."""
    _masters(store, tmp_path)
    with store.work() as session:
        first = import_sales(
            session,
            store.facts,
            sales_file(
                tmp_path,
                "first.csv",
                [
                    ("L1", "C1", "P1", "2026-01-10", "1", "10.00"),
                    ("L3", "C1", "P1", "2026-01-10", "1", "10.00"),
                ],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    batches, events = _count(store, ImportBatch.id), _count(store, AuditEvent.seq)
    mixed = sales_file(
        tmp_path,
        "mixed.csv",
        [
            ("L1", "C1", "P1", "2026-01-11", "1", "10.00"),  # stored
            ("L2", "C9", "P1", "2026-01-11", "1", "10.00"),  # unknown customer
            ("L3", "C1", "P1", "2026-01-11", "1", "x"),  # stored, and not a number
            ("L4", "C1", "P1", "2026-01-11", "1", "10.00"),  # fine
        ],
    )
    with store.work() as session, pytest.raises(InputFileError) as raised:
        import_sales(session, store.facts, mixed, actor=staff("ann"), now=NOW)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (2, "line_id", f"line L1 is already stored, in batch {first.batch_id}"),
        (3, "customer_id", "customer_id 'C9' is not in the customer master"),
        (4, "line_id", f"line L3 is already stored, in batch {first.batch_id}"),
        (4, "net_amount", "net_amount 'x' is not a number"),
    ]
    assert raised.value.total == 4
    assert (_count(store, ImportBatch.id), _count(store, AuditEvent.seq)) == (batches, events)


def test_a_sale_imported_again_must_still_be_what_its_stored_returns_reverse(
    store: Store, tmp_path: Path
) -> None:
    _masters(store, tmp_path)
    header = ("line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount")
    with store.work() as session:
        sale = import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "s1.csv", header, [("L1", "C1", "P1", "2026-01-10", "5", "500.00")]
            ),
            actor=staff("ann"),
            now=NOW,
        )
        import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "r1.csv",
                (*header, "原发票行"),
                [("R1", "C1", "P1", "2026-01-20", "-5", "-500.00", "L1")],
            ),
            actor=staff("ann"),
            now=NOW,
        )
    with store.work() as session:
        void_batch(
            session, store.facts, sale.batch_id, reason="wrong file", actor=staff("ann"), now=NOW
        )
    for name, line, said in (
        (
            "other.csv",
            ("L1", "C2", "P2", "2026-01-25", "1", "100.00"),
            "return R1, stored already, names line L1 but is another customer's, product's or "
            "currency's, or dated before it",
        ),
        (
            "less.csv",
            ("L1", "C1", "P1", "2026-01-10", "1", "100.00"),
            "the returns stored for line L1 come to a quantity of 5, more than the 1 it sells",
        ),
        (
            "cheaper.csv",
            ("L1", "C1", "P1", "2026-01-10", "5", "400.00"),
            "the returns stored for line L1 come to 500, more than the 400 it is invoiced at",
        ),
    ):
        with store.work() as session, pytest.raises(InputFileError) as raised:
            import_sales(
                session,
                store.facts,
                write_csv(tmp_path / name, header, [line]),
                actor=staff("ann"),
                now=NOW,
            )
        assert [(i.row, i.field, i.message) for i in raised.value.issues] == [(2, "line_id", said)]
    # The corrected line, as the return can reverse it, is taken.
    with store.work() as session:
        again = import_sales(
            session,
            store.facts,
            write_csv(
                tmp_path / "fixed.csv", header, [("L1", "C1", "P1", "2026-01-10", "5", "520.00")]
            ),
            actor=staff("ann"),
            now=NOW,
        )
    assert again.rows == 1
