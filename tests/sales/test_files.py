"""Readers: literal files in, exact canonical tables or one exact error line out."""

from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook
from openpyxl.chart import BarChart

from fanli.engine.facts import SALES_SCHEMA
from fanli.kit.errors import InputError
from fanli.kit.money import MINOR_UNITS
from fanli.sales.files import InputFileError, read_customers, read_facts, read_products, read_sales
from fanli.sales.mapping import ColumnMapping, FileKind, load_mapping

HEADER = "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def error_of(path: Path, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as caught:
        read_sales(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_csv_amounts_and_dates_are_parsed_exactly(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.csv",
        HEADER
        + (
            'L1,C1,P1,2026-03-31,10,"1,234.50"\n'
            "L2,C1,P1,2026/3/1,-1,¥-12.3456\n"
            "L3,C2,P2,2026年3月31日,2,5\n"
            "L4,C2,P2,20260102,0.5,￥7\n"
        ),
    )
    table = read_sales(path)
    assert table.schema == SALES_SCHEMA
    rows = table.to_pylist()
    assert [row["net_amount"] for row in rows] == [
        Decimal("1234.5"),
        Decimal("-12.3456"),
        Decimal("5"),
        Decimal("7"),
    ]
    assert [row["invoice_date"] for row in rows] == [
        dt.date(2026, 3, 31),
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 31),
        dt.date(2026, 1, 2),
    ]
    # defaults: order_date = invoice_date, gross = net, document type invoice
    assert rows[0]["order_date"] == dt.date(2026, 3, 31)
    assert rows[1]["gross_amount"] == Decimal("-12.3456")
    assert {row["document_type"] for row in rows} == {"invoice"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "L1,C1,P1,2026-03-31,10,abc",
            "file {f}, row 2, field 'net_amount': net_amount 'abc' is not a number",
        ),
        (
            "L1,C1,P1,2026-03-31,10,12.300000000000001",
            "file {f}, row 2, field 'net_amount': net_amount '12.300000000000001' has more than "
            "4 decimal places",
        ),
        ("L1,C1,P1,2026-03-31,10,", "file {f}, row 2, field 'net_amount': net_amount is empty"),
        (
            "L1,C1,P1,2026-03-31,-10,150.00",
            "file {f}, row 2, field 'net_amount': the amount '150.00' and the quantity have "
            "opposite signs: a sale has both positive, a return both negative",
        ),
        (
            "L1,C1,P1,2026-03-31,3,-0.01",
            "file {f}, row 2, field 'net_amount': the amount '-0.01' and the quantity have "
            "opposite signs: a sale has both positive, a return both negative",
        ),
        ("L1,,P1,2026-03-31,10,1", "file {f}, row 2, field 'customer_id': customer_id is empty"),
        (
            "L1,C1,P1,2026-02-30,10,1",
            "file {f}, row 2, field 'invoice_date': invoice_date '2026-02-30' is not a date "
            "(use 2026-03-31, 2026/3/31 or 2026年3月31日)",
        ),
        (
            "L1,C1,P1,31/03/2026,10,1",
            "file {f}, row 2, field 'invoice_date': invoice_date '31/03/2026' is not a date "
            "(use 2026-03-31, 2026/3/31 or 2026年3月31日)",
        ),
        (
            "L1,C1,P1,2026-03-31,1e3,1",
            "file {f}, row 2, field 'quantity': quantity '1e3' is not a number",
        ),
        (
            "L1,C1,P1,2026-03-31,10,123456789012345",
            "file {f}, row 2, field 'net_amount': net_amount '123456789012345' is too large",
        ),
    ],
)
def test_bad_cell_gives_one_exact_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "s.csv", HEADER + line + "\n")
    error = error_of(path)
    assert str(error) == message.format(f=path)
    assert "\n" not in str(error)


def test_a_currency_fanli_does_not_know_is_refused(tmp_path: Path) -> None:
    """A line in an unknown currency would count for no agreement, silently; a known one in
    lower case is accepted as its code."""
    header = HEADER.rstrip("\n") + ",currency\n"
    path = write(
        tmp_path, "s.csv", header + "L1,C1,P1,2026-03-31,10,1,XYZ\nL2,C1,P1,2026-03-31,10,1,usd\n"
    )
    error = error_of(path)
    assert isinstance(error, InputFileError)
    assert [(i.row, i.field, i.message) for i in error.issues] == [
        (2, "currency", f"unknown currency 'XYZ' (known: {', '.join(sorted(MINOR_UNITS))})")
    ]


def test_a_currency_named_as_erps_write_it_is_read_as_its_code(tmp_path: Path) -> None:
    """Kingdee and Yonyou write 人民币 in 币别; some systems RMB."""
    header = HEADER.rstrip("\n") + ",币别\n"
    lines = [
        f"L{n},C1,P1,2026-03-31,1,1,{name}\n"
        for n, name in enumerate(["人民币", "RMB", "rmb", "美元", "日元", "港币", "EUR"], start=1)
    ]
    rows = read_sales(write(tmp_path, "s.csv", header + "".join(lines))).to_pylist()
    assert [row["currency"] for row in rows] == ["CNY", "CNY", "CNY", "USD", "JPY", "HKD", "EUR"]


def test_errors_are_collected_in_row_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.csv",
        HEADER + "L1,C1,P1,2026-03-31,10,1\nL2,C1,P1,x,10,y\nL1,C1,P1,2026-03-31,10,1\n",
    )
    error = error_of(path)
    assert isinstance(error, InputFileError)
    assert str(error) == (
        f"file {path}, row 3, field 'invoice_date': invoice_date 'x' is not a date "
        "(use 2026-03-31, 2026/3/31 or 2026年3月31日) (and 2 more problems)"
    )
    assert [(issue.row, issue.field, issue.message) for issue in error.issues[1:]] == [
        (3, "net_amount", "net_amount 'y' is not a number"),
        (4, "line_id", "duplicate line_id 'L1' (first on row 2)"),
    ]


def test_missing_required_column(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "line_id,customer_id,product_id,invoice_date,quantity\n")
    assert str(error_of(path)) == (
        f"file {path}, row 1, field 'net_amount': missing required column net_amount (looked "
        "for: net_amount, net amount, net, 不含税金额, 无税金额, 金额, ...; or name your header "
        "for it in a column mapping)"
    )


def test_a_csv_title_line_above_the_headers_is_named_as_such(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.csv",
        "2026年3月销售明细\n\n单据编号,行号,客户编码,物料编码,开票日期,数量,不含税金额\n"
        "INV1,1,C1,P1,2026-03-01,1,100\n",
    )
    assert str(error_of(path)) == (
        f"file {path}, row 1: the first line has one cell ('2026年3月销售明细') and lines below "
        "it have more: if it is a title, remove the lines above the headers"
    )


def test_a_title_row_above_the_headers_is_named_as_such(tmp_path: Path) -> None:
    """ERP exports often open with a title row (2026年3月销售明细): the message says which row
    the headers seem to be on."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["2026年3月销售明细"])
    sheet.append([None])
    sheet.append(["单据编号", "行号", "客户编码", "物料编码", "开票日期", "数量", "不含税金额"])
    sheet.append(["INV1", 1, "C1", "P1", "2026-03-01", 1, 100])
    path = tmp_path / "s.xlsx"
    workbook.save(path)
    assert str(error_of(path)) == (
        f"file {path}, row 1, field 'customer_id': missing required column customer_id "
        "(looked for: customer_id, customer, customer id, 客户编码, 客户代码, 客户编号, ...): the "
        "headers seem to be on row 3; remove the rows above them (a title, say)"
    )


def test_unknown_customer_and_product(tmp_path: Path) -> None:
    customers = write(tmp_path, "c.csv", "customer_id,name\nC1,甲\n")
    products = write(tmp_path, "p.csv", "product_id,name\nP1,水\n")
    sales = write(tmp_path, "s.csv", HEADER + "L1,C1,P1,2026-03-31,1,1\nL2,C9,P9,2026-03-31,1,1\n")
    with pytest.raises(InputFileError) as caught:
        read_facts(sales, customers=customers, products=products)
    assert str(caught.value) == (
        f"file {sales}, row 3, field 'customer_id': customer_id 'C9' is not in c.csv "
        "(and 1 more problem)"
    )
    assert caught.value.issues[1].message == "product_id 'P9' is not in p.csv"


def test_problems_name_the_column_as_the_file_does(tmp_path: Path) -> None:
    """A Chinese ERP export's problems say 不含税金额 and 开票日期, the headers the user sees,
    not Fanli's field names."""
    text = (
        "单据编号,行号,客户编码,物料编码,开票日期,数量,不含税金额\n"
        "XS01,1,C1,P1,2026/1/5,10,abc\n"
        "XS01,1,C1,P1,2026/2/30,10,5\n"
        "XS02,1,,P1,2026/1/5,10,5\n"
    )
    path = write(tmp_path, "erp.csv", text)
    with pytest.raises(InputFileError) as caught:
        read_sales(path)
    assert [(i.row, i.field, i.message) for i in caught.value.issues] == [
        (2, "不含税金额", "不含税金额 'abc' is not a number"),
        (
            3,
            "开票日期",
            "开票日期 '2026/2/30' is not a date (use 2026-03-31, 2026/3/31 or 2026年3月31日)",
        ),
        (3, "单据编号+行号", "duplicate 单据编号+行号 'XS01-1' (first on row 2)"),
        (4, "客户编码", "客户编码 is empty"),
    ]


def test_gbk_csv_with_chinese_erp_headers(tmp_path: Path) -> None:
    text = (
        "单据编号,行号,单据类型,客户编码,物料编码,开票日期,回款日期,数量,不含税金额,价税合计,币种\n"
        'XS01,1,销售发票,C1,P1,2026/1/5,2026/2/5,10,"1,000.00",1130.00,cny\n'
        "HZ01,1,红字发票,C1,P1,2026年2月1日,,-1,-100,-113,CNY\n"
    )
    path = write(tmp_path, "erp.csv", text, encoding="gbk")
    rows = read_sales(path).to_pylist()
    assert [row["line_id"] for row in rows] == ["XS01-1", "HZ01-1"]
    assert [row["document_type"] for row in rows] == ["invoice", "credit_note"]
    assert [row["net_amount"] for row in rows] == [Decimal("1000"), Decimal("-100")]
    assert [row["gross_amount"] for row in rows] == [Decimal("1130"), Decimal("-113")]
    assert [row["paid_date"] for row in rows] == [dt.date(2026, 2, 5), None]
    assert [row["currency"] for row in rows] == ["CNY", "CNY"]


def test_utf8_bom_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "\ufeff" + HEADER + "L1,C1,P1,2026-03-31,1,2.5\n")
    assert read_sales(path).column("line_id").to_pylist() == ["L1"]


def test_mapping_file(tmp_path: Path) -> None:
    mapping = write(
        tmp_path,
        "m.yaml",
        (
            "line_id: Beleg\ncustomer_id: Kunde\nproduct_id: Artikel\ninvoice_date: Datum\n"
            "quantity: Menge\nnet_amount: Netto\ndocument_types: {Gutschrift: credit_note}\n"
        ),
    )
    sales = write(
        tmp_path,
        "s.csv",
        "Beleg,Kunde,Artikel,Datum,Menge,Netto,Art\nB1,K1,A1,2026-01-02,3,4.5,Gutschrift\n",
    )
    table = read_sales(sales, mapping=load_mapping(mapping))
    row = table.to_pylist()[0]
    assert (row["line_id"], row["customer_id"], row["net_amount"]) == ("B1", "K1", Decimal("4.5"))
    assert row["document_type"] == "invoice"  # 'Art' is not mapped to document_type


def test_a_document_type_fanli_does_not_know_is_refused_until_mapped(tmp_path: Path) -> None:
    header = "单据编号,行号,单据类型,客户编码,物料编码,开票日期,数量,不含税金额\n"
    sales = write(
        tmp_path,
        "s.csv",
        header
        + "INV1,1,销售发票,C1,P1,2026-01-02,3,30.00\n"
        + "INV1,2,赠品,C1,P1,2026-01-02,1,0\n"
        + "INV2,1,Invoice,C1,P1,2026-01-03,1,10.00\n"
        + "INV3,1,proforma,C1,P1,2026-01-04,1,10.00\n",
    )
    with pytest.raises(InputFileError) as raised:
        read_sales(sales)
    known = "(invoice, credit_note, debit_note, order)"
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (
            3,
            "单据类型",
            f"单据类型 '赠品' is not a document type Fanli knows {known}: map it under "
            "document_types in a mapping file, or leave such lines out",
        ),
        (
            5,
            "单据类型",
            f"单据类型 'proforma' is not a document type Fanli knows {known}: map it under "
            "document_types in a mapping file, or leave such lines out",
        ),
    ]
    mapping = write(tmp_path, "m.yaml", "document_types: {赠品: invoice, proforma: order}\n")
    table = read_sales(sales, mapping=load_mapping(mapping))
    assert table.column("document_type").to_pylist() == ["invoice", "invoice", "invoice", "order"]
    # a mapping may only name Fanli's own types
    wrong = write(tmp_path, "wrong.yaml", "document_types: {销售出库单: sale}\n")
    with pytest.raises(InputError) as refused:
        load_mapping(wrong)
    assert str(refused.value) == (
        f"file {wrong}: document_types: 'sale' (for '销售出库单') is not a Fanli document type "
        "(invoice, credit_note, debit_note, order)"
    )


def test_mapping_naming_a_missing_column(tmp_path: Path) -> None:
    mapping = write(tmp_path, "m.yaml", "net_amount: Netto\n")
    sales = write(tmp_path, "s.csv", HEADER + "L1,C1,P1,2026-03-31,1,1\n")
    assert str(error_of(sales, mapping=load_mapping(mapping))) == (
        f"file {sales}, field 'Netto': the mapping names column 'Netto' for net_amount, but the "
        "file has no such column"
    )


def test_a_mapping_that_feeds_two_fields_from_one_column_is_refused(tmp_path: Path) -> None:
    # Read as asked, the file's own line_id column would be dropped and every line would carry
    # its customer's code as its line id.
    mapping = write(tmp_path, "m.yaml", "customer_id: cust\nline_id: cust\n")
    sales = write(
        tmp_path,
        "s.csv",
        "line_id,cust,product_id,invoice_date,quantity,net_amount\nM1,C1,P1,2026-03-31,1,1\n",
    )
    assert str(error_of(sales, mapping=load_mapping(mapping))) == (
        f"file {sales}, field 'cust': the mapping names column 'cust' for both customer_id and "
        "line_id: a column feeds one field"
    )


def test_two_columns_that_read_as_one_field_are_refused_unless_the_mapping_chooses(
    tmp_path: Path,
) -> None:
    """ "Net Amount" and "net_amount" are one header once normalised: which feeds net_amount
    would be a guess. The mapping naming one exactly settles it; another field's alias order
    (不含税金额 before 金额) is a preference, not a clash."""
    text = (
        "line_id,customer_id,product_id,invoice_date,quantity,Net Amount,net_amount\n"
        "L1,C1,P1,2026-03-31,1,100.00,90.00\n"
    )
    sales = write(tmp_path, "s.csv", text)
    assert str(error_of(sales)) == (
        f"file {sales}, field 'net_amount': columns 'Net Amount' and 'net_amount' both read as "
        "net_amount: keep one, or name the one to use in a column mapping"
    )
    chosen = ColumnMapping(columns={FileKind.SALES: {"net_amount": "net_amount"}})
    assert read_sales(sales, mapping=chosen).column("net_amount").to_pylist() == [
        Decimal("90.0000")
    ]
    # Two line-number columns make the line id a guess too.
    parts = write(
        tmp_path,
        "p.csv",
        "单据编号,line_number,Line Number,客户编码,物料编码,开票日期,数量,不含税金额\n"
        "D1,1,2,C1,P1,2026-03-31,1,100.00\n",
    )
    assert str(error_of(parts)) == (
        f"file {parts}, field 'Line Number': columns 'line_number' and 'Line Number' both read as "
        "line_id: keep one, or name the one to use in a column mapping"
    )
    different = write(
        tmp_path,
        "d.csv",
        "单据编号,行号,客户编码,物料编码,开票日期,数量,不含税金额,金额\n"
        "D1,1,C1,P1,2026-03-31,1,100.00,113.00\n",
    )
    table = read_sales(different)
    assert (table.column("line_id")[0].as_py(), table.column("net_amount")[0].as_py()) == (
        "D1-1",
        Decimal("100.0000"),
    )


def test_a_mapping_file_that_says_a_field_twice_or_is_not_text_is_refused(tmp_path: Path) -> None:
    twice = write(tmp_path, "m.yaml", "customer_id: Kunde\ncustomer_id: Kundennummer\n")
    with pytest.raises(InputError) as caught:
        load_mapping(twice)
    assert str(caught.value) == (
        f"file {twice}: not valid YAML or JSON at line 2, column 1 (the field customer_id is "
        "given twice)"
    )
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00c")
    with pytest.raises(InputError) as caught:
        load_mapping(binary)
    assert str(caught.value) == f"file {binary}: is not UTF-8 text"


def test_days_outside_the_calendar_are_named_by_row(tmp_path: Path) -> None:
    sales = write(
        tmp_path,
        "s.csv",
        HEADER + "L1,C1,P1,0001-01-01,1,1\nL2,C1,P1,2026-03-31,1,1\nL3,C1,P1,9999-12-31,1,1\n",
    )
    outside = "is outside the days Fanli keeps (1900-01-01 to 9998-12-31)"
    assert [(i.row, i.field, i.message) for i in error_of(sales).issues] == [
        (2, "invoice_date", f"invoice_date '0001-01-01' {outside}"),
        (4, "invoice_date", f"invoice_date '9999-12-31' {outside}"),
    ]
    # A Parquet day past Python's last one could not even be read back into a message.
    far = tmp_path / "far.parquet"
    table = pa.table(
        {
            "line_id": ["L1"],
            "customer_id": ["C1"],
            "product_id": ["P1"],
            "invoice_date": pa.array([2**31 - 1], pa.int32()).cast(pa.date32()),
            "quantity": ["1"],
            "net_amount": ["1"],
        }
    )
    pq.write_table(table, far)
    assert [(i.row, i.field, i.message) for i in error_of(far).issues] == [
        (1, "invoice_date", f"invoice_date '<value out of range: 2147483647>' {outside}")
    ]


def test_a_parquet_column_of_lists_or_a_header_past_the_csv_limit_is_refused(
    tmp_path: Path,
) -> None:
    nested = tmp_path / "nested.parquet"
    pq.write_table(
        pa.table({"line_id": pa.array([["a"]]), "customer_id": ["C1"], "product_id": ["P1"]}),
        nested,
    )
    refused = error_of(nested)
    assert (refused.field, str(refused)) == (
        "line_id",
        f"file {nested}, field 'line_id': column 'line_id' holds list<element: string> values; "
        "a column holds text, numbers or dates",
    )
    wide = write(tmp_path, "wide.csv", "x" * 140_000 + "\n1\n")
    assert str(error_of(wide)) == (
        f"file {wide}, row 1: the header row cannot be read (field larger than field limit "
        "(131072))"
    )


def test_a_moment_with_a_zone_falls_on_the_companys_day(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    moments = [
        dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC),  # 07:30 on 2 March in Shanghai
        dt.datetime(2026, 3, 1, 15, 59, tzinfo=dt.UTC),  # 23:59 on 1 March in Shanghai
    ]
    pq.write_table(
        pa.table(
            {
                "line_id": ["L1", "L2"],
                "customer_id": ["C1", "C1"],
                "product_id": ["P1", "P1"],
                "invoice_date": pa.array(moments, pa.timestamp("us", tz="UTC")),
                "quantity": ["1", "1"],
                "net_amount": ["1", "1"],
            }
        ),
        path,
    )
    assert read_sales(path).column("invoice_date").to_pylist() == [
        dt.date(2026, 3, 2),
        dt.date(2026, 3, 1),
    ]


def test_every_row_with_too_few_or_too_many_cells_is_named(tmp_path: Path) -> None:
    sales = write(
        tmp_path,
        "s.csv",
        HEADER + "L1,C1,P1,2026-03-31,1,1\nL2,C1\n\nL3,C1,P1,2026-03-31,1,1,extra\n",
    )
    refused = error_of(sales)
    assert [(i.row, i.field, i.message) for i in refused.issues] == [
        (3, None, "this row has 2 cells; the header has 6"),
        (5, None, "this row has 7 cells; the header has 6"),
    ]
    assert refused.total == 2
    # A line of spaces is a row of one cell to Arrow, and to the scan that names it.
    spaces = write(
        tmp_path, "w.csv", HEADER + "L1,C1,P1,2026-03-31,1,1\n   \nL2,C1,P1,2026-03-31,1,1\n"
    )
    assert [(i.row, i.message) for i in error_of(spaces).issues] == [
        (3, "this row has 1 cells; the header has 6")
    ]


def test_excel_floats_dates_and_drift(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"])
    sheet.append(["L1", 1001, "P1", dt.datetime(2026, 3, 31), 10, 1234.5])  # noqa: DTZ001
    sheet.append(["L2", 1001, "P1", "2026/4/1", 2.5, 0.1])
    path = tmp_path / "s.xlsx"
    workbook.save(path)
    rows = read_sales(path).to_pylist()
    assert [row["customer_id"] for row in rows] == ["1001", "1001"]
    assert [row["net_amount"] for row in rows] == [Decimal("1234.5"), Decimal("0.1")]
    assert [row["quantity"] for row in rows] == [Decimal("10"), Decimal("2.5")]
    assert rows[0]["invoice_date"] == dt.date(2026, 3, 31)

    sheet.append(["L3", 1001, "P1", dt.datetime(2026, 4, 2), 1, 1234.56789])  # noqa: DTZ001
    workbook.save(path)
    assert str(error_of(path)) == (
        f"file {path}, row 4, field 'net_amount': net_amount '1234.56789' has more than "
        "4 decimal places"
    )


def test_a_workbook_is_read_from_the_sheet_it_opens_on_and_messages_name_it(
    tmp_path: Path,
) -> None:
    header = ["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"]
    workbook = Workbook()
    cover = workbook.active
    cover.title = "封面"
    cover.append(["2026年3月销售"])
    data = workbook.create_sheet("数据")
    data.append(header)
    data.append(["L1", "C1", "P1", "2026-03-31", "1", "x"])
    workbook.active = data  # the sheet Excel opens on
    path = tmp_path / "s.xlsx"
    workbook.save(path)
    assert str(error_of(path)) == (
        f"file {path} (sheet '数据'), row 2, field 'net_amount': net_amount 'x' is not a number"
    )
    # A hidden sheet is never read, even when the workbook was saved with it active.
    workbook.active = cover
    cover.sheet_state = "hidden"
    data.delete_rows(2)
    data.append(["L1", "C1", "P1", "2026-03-31", "1", "2.50"])
    workbook.save(path)
    assert read_sales(path).column("net_amount").to_pylist() == [Decimal("2.5")]

    # A workbook saved while showing a chart sheet is read from its first visible worksheet.
    chart = workbook.create_chartsheet("图表")
    chart.add_chart(BarChart())
    workbook.active = chart
    workbook.save(path)
    assert read_sales(path).column("net_amount").to_pylist() == [Decimal("2.5")]


def test_a_workbook_with_its_lines_over_several_sheets_is_refused_in_words(
    tmp_path: Path,
) -> None:
    """A month per sheet: one import would take the sheet it opens on and leave the others
    out. Another sheet counts when its headers match the sales columns as the read sheet's are
    matched (built-in names, or the mapping); notes, a summary by customer, a blank template
    and a hidden sheet are no concern."""
    header = ["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"]
    workbook = Workbook()
    january = workbook.active
    assert january is not None
    january.title = "1月"
    january.append(header)
    january.append(["L1", "C1", "P1", "2026-01-31", "1", "2.50"])
    notes = workbook.create_sheet("说明")
    notes.append(["本文件由 ERP 导出"])
    notes.append(["导出时间 2026-02-01"])
    summary = workbook.create_sheet("汇总")
    summary.append(["customer_id", "net_amount"])
    summary.append(["C1", "2.50"])
    template = workbook.create_sheet("模板")
    template.append(header)
    template.append([None, "  ", None])
    path = tmp_path / "s.xlsx"
    workbook.save(path)
    assert read_sales(path).column("line_id").to_pylist() == ["L1"]

    def refused(*sheets: str) -> str:
        return (
            f"file {path} (sheet '1月'): other sheets hold lines under the same columns too "
            f"({', '.join(repr(s) for s in sheets)}): a workbook is imported one sheet at a "
            "time, so put the lines in one sheet, or save each sheet as a file of its own and "
            "import each"
        )

    # the same headers, an empty cell after them; then Chinese ERP names for the same columns
    # with a remarks column more, in another order
    february = workbook.create_sheet("2月")
    february.append([*header, None])
    february.append(["L2", "C1", "P1", "2026-02-28", "1", "1.00"])
    march = workbook.create_sheet("3月")
    march.append(["客户编码", "物料编码", "开票日期", "数量", "不含税金额", "Line ID", "备注"])
    march.append(["C1", "P1", "2026-03-31", "1", "1.00", "L3", "补录"])
    workbook.save(path)
    error = error_of(path)
    assert type(error) is InputError
    assert str(error) == refused("2月", "3月")
    workbook["2月"].sheet_state = "hidden"
    workbook.save(path)
    assert str(error_of(path)) == refused("3月")
    workbook["3月"].sheet_state = "hidden"
    workbook.save(path)
    assert read_sales(path).column("line_id").to_pylist() == ["L1"]
    # Headers the built-in names do not know count through the user's mapping.
    april = workbook.create_sheet("4月")
    april.append(["单号", "客户", "物料", "日期", "件数", "金额"])
    april.append(["L4", "C1", "P1", "2026-04-30", "1", "1.00"])
    workbook.save(path)
    assert read_sales(path).column("line_id").to_pylist() == ["L1"]  # not sales lines to it
    mapped = ColumnMapping(
        columns={
            FileKind.SALES: {
                "line_id": "单号",
                "customer_id": "客户",
                "product_id": "物料",
                "invoice_date": "日期",
                "quantity": "件数",
                "net_amount": "金额",
            }
        }
    )
    april_only = tmp_path / "april.xlsx"
    workbook.active = april
    workbook.save(april_only)
    assert read_sales(april_only, mapping=mapped).column("line_id").to_pylist() == ["L4"]


def test_excel_formulas_without_saved_values_are_refused_by_cell(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"])
    sheet.append(["L1", "C1", "P1", "2026-03-31", 10, 100])
    sheet.append(["L2", "C1", "P1", "2026-03-31", 2, "=F2*2"])
    sheet.append(["L3", "C1", "P1", "2026-03-31", "=E3+1", "=F3/2"])
    path = tmp_path / "s.xlsx"
    workbook.save(path)  # openpyxl saves formulas as they are, with no calculated value
    error = error_of(path)
    assert isinstance(error, InputFileError)
    said = "holds a formula with no saved value: open the workbook in Excel or WPS and save it"
    assert [
        (issue.row, issue.field, issue.message.split(" holds")[0]) for issue in error.issues
    ] == [
        (3, "net_amount", "cell F3"),
        (4, "quantity", "cell E4"),
        (4, "net_amount", "cell F4"),
    ]
    assert all(said in issue.message for issue in error.issues)
    # Saved by a spreadsheet program, each formula keeps its value: the values are read.
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet_xml = parts["xl/worksheets/sheet1.xml"].decode()
    for formula, value in (("F2*2", "200"), ("E3+1", "3"), ("F3/2", "100")):
        sheet_xml = sheet_xml.replace(f"<f>{formula}</f><v />", f"<f>{formula}</f><v>{value}</v>")
    parts["xl/worksheets/sheet1.xml"] = sheet_xml.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    rows = read_sales(path).to_pylist()
    assert [(row["quantity"], row["net_amount"]) for row in rows] == [
        (Decimal("10"), Decimal("100")),
        (Decimal("2"), Decimal("200")),
        (Decimal("3"), Decimal("100")),
    ]


def test_excel_numbers_too_long_to_hold_exactly_are_refused_in_the_columns_read(
    tmp_path: Path,
) -> None:
    """A 16- or 20-digit invoice number in a number cell keeps 15 significant digits: read as
    it is, the same line sent again as text would be another line id, and count twice."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(
        ["单据编号", "行号", "客户编码", "物料编码", "开票日期", "数量", "不含税金额", "备注"]
    )
    # as Excel stores 20260301000123456789 typed into a number cell
    sheet.append([2.0260301000123458e19, 1, "C1", "P1", "2026-03-01", 1, 100, 1.0e20])
    sheet.append(["20260301000123456789", 2, "C1", "P1", "2026-03-01", 1, 100, None])
    sheet.append([999999999999999.0, 1, "C1", "P1", "2026-03-01", 1, 100, 1.0e20])
    # a 16-digit invoice number typed as 2026030100012345: Excel keeps 2026030100012340
    sheet.append([2026030100012340.0, 3, "C1", "P1", "2026-03-01", 1, 100, None])
    path = tmp_path / "s.xlsx"
    workbook.save(path)
    error = error_of(path)
    assert isinstance(error, InputFileError)
    # Only the column read: 备注 is no field, so its number is no concern.
    assert [(issue.row, issue.field, issue.message) for issue in error.issues] == [
        (
            2,
            "单据编号",
            "20260301000123460000 is a number too long for a spreadsheet to hold exactly "
            "(Excel keeps 15 significant digits), so digits may be lost: format the column "
            "as text and enter the value again",
        ),
        (
            5,
            "单据编号",
            "2026030100012340 is a number too long for a spreadsheet to hold exactly "
            "(Excel keeps 15 significant digits), so digits may be lost: format the column "
            "as text and enter the value again",
        ),
    ]
    # Typed as text, and of 15 digits, the numbers are read as they are.
    sheet.delete_rows(5)
    sheet.delete_rows(2)
    workbook.save(path)
    assert [row["line_id"] for row in read_sales(path).to_pylist()] == [
        "20260301000123456789-2",
        "999999999999999-1",
    ]


def test_parquet_decimals_pass_and_floats_are_refused(tmp_path: Path) -> None:
    table = pa.table(
        {
            "line_id": ["L1"],
            "customer_id": [7],
            "product_id": ["P1"],
            "invoice_date": pa.array([dt.date(2026, 1, 2)]),
            "quantity": pa.array([Decimal("2")], pa.decimal128(10, 0)),
            "net_amount": pa.array([Decimal("12.34")], pa.decimal128(12, 2)),
        }
    )
    path = tmp_path / "s.parquet"
    pq.write_table(table, path)
    row = read_sales(path).to_pylist()[0]
    assert (row["customer_id"], row["net_amount"]) == ("7", Decimal("12.34"))

    pq.write_table(table.set_column(5, "net_amount", pa.array([12.34])), path)
    assert str(error_of(path)) == (
        f"file {path}, field 'net_amount': net_amount is stored as double, a binary float; "
        "amounts must be decimals or text"
    )


def test_dimensions_with_presets_and_attributes(tmp_path: Path) -> None:
    customers = write(
        tmp_path,
        "c.csv",
        "客户编码,客户名称,客户集团,客户分类,大区,信用等级\n"
        "C1,上海华东医药贸易有限公司,华东集团,批发,华东,A\n",
        encoding="gbk",
    )
    table = read_customers(customers)
    assert table.column_names == ["customer_id", "name", "group", "segment", "region", "信用等级"]
    assert table.to_pylist()[0]["segment"] == "批发"
    products = write(
        tmp_path, "p.csv", "物料编码,物料名称,产品类别,品牌\nP1,水,饮料,清泉\nP1,水,饮料,清泉\n"
    )
    with pytest.raises(InputFileError) as caught:
        read_products(products)
    assert str(caught.value) == (
        f"file {products}, row 3, field '物料编码': duplicate 物料编码 'P1' (first on row 2)"
    )


def test_unsupported_and_unreadable_files(tmp_path: Path) -> None:
    assert str(error_of(tmp_path / "s.xls")) == (
        f"file {tmp_path / 's.xls'}: old .xls workbooks are not read; save it as .xlsx"
    )
    missing = tmp_path / "missing.csv"
    assert str(error_of(missing)) == f"file {missing}: cannot read: No such file or directory"


def test_large_csv_is_vectorised(tmp_path: Path) -> None:
    lines = [HEADER] + [
        f"L{i},C{i % 97},P{i % 13},2026-03-{i % 28 + 1:02d},{i % 50},{i}.25\n"
        for i in range(200_000)
    ]
    path = write(tmp_path, "big.csv", "".join(lines))
    seen: list[int] = []
    table = read_sales(path, progress=lambda _file, done, _total: seen.append(done))
    assert table.num_rows == 200_000
    assert seen[-1] == path.stat().st_size
    assert table.column("net_amount")[199_999].as_py() == Decimal("199999.25")


def test_fast_and_careful_parsers_agree_on_plain_numbers(tmp_path: Path) -> None:
    """A clean column takes Arrow's cast; one odd cell sends the column through the careful
    parser. Both read ".5" and "5." the same way, and both refuse exponents."""
    header = "line_id,customer_id,product_id,invoice_date,quantity,net_amount\n"
    clean = tmp_path / "clean.csv"
    clean.write_text(header + "L1,C1,P1,2026-01-01,5.,.5\n", encoding="utf-8")
    odd = tmp_path / "odd.csv"
    odd.write_text(
        header + 'L1,C1,P1,2026-01-01,5.,.5\nL2,C1,P1,2026-01-01,1,"1,234.50"\n', encoding="utf-8"
    )
    fast = read_sales(clean)
    careful = read_sales(odd)
    assert fast.column("quantity").to_pylist() == [Decimal("5.0000")]
    assert careful.column("quantity").to_pylist()[:1] == [Decimal("5.0000")]
    assert fast.column("net_amount").to_pylist() == [Decimal("0.5000")]
    assert careful.column("net_amount").to_pylist() == [Decimal("0.5000"), Decimal("1234.5000")]
    exponent = tmp_path / "exponent.csv"
    exponent.write_text(header + "L1,C1,P1,2026-01-01,1,1e5\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="net_amount '1e5' is not a number"):
        read_sales(exponent)


def test_a_nul_character_in_any_text_is_refused_by_row_and_column(tmp_path: Path) -> None:
    sales = write(
        tmp_path, "s.csv", HEADER + "L1\x00,C1,P1,2026-03-31,1,1\nL2,C1,P\x001,2026-03-31,1,1\n"
    )
    with pytest.raises(InputFileError) as raised:
        read_sales(sales)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (2, "line_id", "line_id holds a NUL character (\\x00)"),
        (3, "product_id", "product_id holds a NUL character (\\x00)"),
    ]
    customers = write(tmp_path, "c.csv", "客户编码,客户名称,等级\nC1,a\x00b,A\nC2,乙,\x00\n")
    with pytest.raises(InputFileError) as raised:
        read_customers(customers)
    assert [(i.row, i.field, i.message) for i in raised.value.issues] == [
        (2, "客户名称", "客户名称 holds a NUL character (\\x00)"),
        (3, "等级", "等级 holds a NUL character (\\x00)"),
    ]


def test_a_file_separated_by_tabs_or_semicolons_is_read_as_such(tmp_path: Path) -> None:
    for name, separator in (("tabs.csv", "\t"), ("semicolons.csv", ";")):
        text = "客户编码,物料编码,开票日期,数量,不含税金额,单据编号,行号\n".replace(",", separator)
        text += separator.join(["C1", "P1", "2026-03-31", "2", "1,234.50", "INV1", "1"]) + "\n"
        table = read_sales(write(tmp_path, name, text))
        assert table.select(["line_id", "customer_id", "net_amount"]).to_pylist() == [
            {"line_id": "INV1-1", "customer_id": "C1", "net_amount": Decimal("1234.50")}
        ]
    # A decimal comma is not read as a decimal point: refused by row, not misread.
    text = (
        "line_id;customer_id;product_id;invoice_date;quantity;net_amount\n"
        "L1;C1;P1;2026-03-31;1;2,50\n"
    )
    assert str(error_of(write(tmp_path, "comma.csv", text))) == (
        f"file {tmp_path / 'comma.csv'}, row 2, field 'net_amount': net_amount '2,50' is not a "
        "number"
    )


def test_blank_rows_are_skipped_and_rows_keep_their_numbers(tmp_path: Path) -> None:
    header = ["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"]
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    sheet.append(["L1", "C1", "P1", "2026-03-01", 1, 10])
    sheet.append([None] * 6)  # spacing, row 3
    sheet.append([None, " ", None, None, None, None])  # row 4: blank too
    sheet.append(["L2", "C1", "P1", "2026-03-02", 1, "x"])  # row 5
    sheet.append(["L3", "C1", "P1", "2026-03-03", 1, 30])
    sheet.append([None] * 6)
    sheet.append(["L4", "C1", "P1", "2026-03-04", 1, "y"])  # row 8
    workbook.save(tmp_path / "s.xlsx")
    # A CSV with an empty line and a line of commas (a blank row saved from a workbook).
    text = (
        ",".join(header) + "\n"
        "L1,C1,P1,2026-03-01,1,10\n"
        "\n"
        ",,,,,\n"
        "L2,C1,P1,2026-03-02,1,x\n"
        "L3,C1,P1,2026-03-03,1,30\n"
        "\r\n"
        "L4,C1,P1,2026-03-04,1,y\n"
    )
    for path in (tmp_path / "s.xlsx", write(tmp_path, "s.csv", text)):
        with pytest.raises(InputFileError) as raised:
            read_sales(path)
        assert [(i.row, i.message) for i in raised.value.issues] == [
            (5, "net_amount 'x' is not a number"),
            (8, "net_amount 'y' is not a number"),
        ], path
    fixed = text.replace(",x\n", ",20\n").replace(",y\n", ",40\n")
    table = read_sales(write(tmp_path, "fixed.csv", fixed))
    assert table.column("line_id").to_pylist() == ["L1", "L2", "L3", "L4"]


def test_a_sales_file_sent_as_products_or_customers_is_refused(tmp_path: Path) -> None:
    sales = write(
        tmp_path,
        "sales.csv",
        "物料编码,客户编码,开票日期,数量,不含税金额\nP1,C1,2026-01-05,1,5\n",
    )
    for reader, kind in ((read_products, "products"), (read_customers, "customers")):
        with pytest.raises(InputError) as refused:
            reader(sales)
        assert str(refused.value) == (
            f"file {sales}: the file has the columns of sales lines (开票日期, 不含税金额), not "
            f"of {kind}: import it as sales"
        )


def test_a_nul_character_in_a_header_is_refused(tmp_path: Path) -> None:
    customers = write(tmp_path, "c.csv", "客户编码,客户名称,等\x00级\nC1,甲,A\n")
    with pytest.raises(InputError) as refused:
        read_customers(customers)
    assert str(refused.value) == (
        f"file {customers}, row 1, field '等\\x00级': a column header holds a NUL character (\\x00)"
    )


def test_rows_are_numbered_whatever_ends_the_lines(tmp_path: Path) -> None:
    lines = [
        "line_id,customer_id,product_id,invoice_date,quantity,net_amount",
        "L1,C1,P1,2026-03-01,1,10",
        "",
        "L2,C1,P1,2026-03-02,1,x",
    ]
    for ending in ("\n", "\r\n", "\r"):
        path = write(tmp_path, "s.csv", ending.join(lines))  # no break after the last line
        with pytest.raises(InputFileError) as raised:
            read_sales(path)
        assert [(i.row, i.message) for i in raised.value.issues] == [
            (4, "net_amount 'x' is not a number")
        ], repr(ending)


def test_a_workbook_of_charts_only_is_refused_in_words(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.remove(workbook.active)
    workbook.create_chartsheet("图表").add_chart(BarChart())
    path = tmp_path / "charts.xlsx"
    workbook.save(path)
    assert str(error_of(path)) == f"file {path}: the workbook has no worksheet, only charts"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        # 红字 lines printed with positive amounts had counted as sales
        (
            "HZ9,1,红字发票,C1,P1,2026-08-05,10,1000.00",
            "file {f}, row 2, field '不含税金额': the amount '1000.00' of a credit_note has the "
            "wrong sign: a credit_note has its quantity and amount negative (or zero)",
        ),
        (
            "HZ9,1,credit_note,C1,P1,2026-08-05,0,5.00",
            "file {f}, row 2, field '不含税金额': the amount '5.00' of a credit_note has the "
            "wrong sign: a credit_note has its quantity and amount negative (or zero)",
        ),
        (
            "JX9,1,debit_note,C1,P1,2026-08-05,-1,-5.00",
            "file {f}, row 2, field '不含税金额': the amount '-5.00' of a debit_note has the "
            "wrong sign: a debit_note has its quantity and amount positive (or zero)",
        ),
        # opposite signs are said once, as such
        (
            "HZ9,1,红字发票,C1,P1,2026-08-05,-10,1000.00",
            "file {f}, row 2, field '不含税金额': the amount '1000.00' and the quantity have "
            "opposite signs: a sale has both positive, a return both negative",
        ),
    ],
)
def test_a_credit_note_takes_back_and_a_debit_note_adds(
    tmp_path: Path, line: str, message: str
) -> None:
    header = "单据编号,行号,单据类型,客户编码,物料编码,开票日期,数量,不含税金额\n"
    path = write(tmp_path, "s.csv", header + line + "\n")
    assert str(error_of(path)) == message.format(f=path)


def test_credit_and_debit_notes_of_the_right_sign_are_read(tmp_path: Path) -> None:
    header = "单据编号,行号,单据类型,客户编码,物料编码,开票日期,数量,不含税金额\n"
    path = write(
        tmp_path,
        "s.csv",
        header
        + "HZ9,1,红字发票,C1,P1,2026-08-05,-10,-1000.00\n"
        + "HZ9,2,红字发票,C1,P1,2026-08-05,0,-5.00\n"
        + "JX9,1,debit_note,C1,P1,2026-08-05,0,5.00\n",
    )
    rows = read_sales(path).to_pylist()
    assert [(r["document_type"], r["quantity"], r["net_amount"]) for r in rows] == [
        ("credit_note", Decimal("-10"), Decimal("-1000.00")),
        ("credit_note", Decimal("0"), Decimal("-5.00")),
        ("debit_note", Decimal("0"), Decimal("5.00")),
    ]
