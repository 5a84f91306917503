"""Column mapping: which header of a user's export feeds which Fanli field.

ERP exports name their columns in many ways (``不含税金额``, ``Net Amount``, ``net_amount``). A
mapping resolves each Fanli field to one header of the file: first the user's mapping file
(``{fanli_field: "their header"}``), then the built-in aliases below, which cover the canonical
names, common English spellings and the headers of common Chinese ERP exports (Kingdee, Yonyou
and the like). Headers are compared after trimming and case folding, ignoring spaces, ``_`` and
``-``, so ``Net Amount`` matches ``net_amount``.

A mapping file may be flat (applies to every kind of file) or split into ``sales:``,
``customers:`` and ``products:`` sections; ``document_types:`` maps the file's document type
values to Fanli's (``{"销售出库单": invoice}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from fanli.agreements.files import read_document
from fanli.kit.errors import InputError


class FileKind(StrEnum):
    """The three kinds of input file a calculation reads."""

    SALES = "sales"
    CUSTOMERS = "customers"
    PRODUCTS = "products"


# Aliases per field, canonical name first. Order matters: the first alias found wins.
SALES_ALIASES: dict[str, tuple[str, ...]] = {
    "line_id": ("line_id", "line id", "line", "明细id", "行id", "分录id", "明细编号"),
    # A return or credit note may name the invoice line it reverses.
    "original_line_id": (
        "original_line_id",
        "original line id",
        "original line",
        "原发票行",
        "原单据行",
        "原明细id",
        "原行id",
    ),
    "document_type": (
        "document_type",
        "document type",
        "doc type",
        "单据类型",
        "发票类型",
        "业务类型",
    ),
    "customer_id": (
        "customer_id",
        "customer",
        "customer id",
        "customer code",
        "customer no",
        "客户编码",
        "客户代码",
        "客户编号",
        "客户id",
    ),
    "product_id": (
        "product_id",
        "product",
        "product code",
        "sku",
        "item",
        "item code",
        "material",
        "物料编码",
        "商品编码",
        "存货编码",
        "产品编码",
        "物料代码",
    ),
    "order_date": ("order_date", "order date", "订单日期", "下单日期"),
    "invoice_date": (
        "invoice_date",
        "invoice date",
        "开票日期",
        "发票日期",
        "单据日期",
    ),
    "paid_date": (
        "paid_date",
        "paid date",
        "payment date",
        "回款日期",
        "收款日期",
        "核销日期",
    ),
    "quantity": ("quantity", "qty", "数量", "销售数量"),
    "net_amount": (
        "net_amount",
        "net amount",
        "net",
        "amount excl. vat",
        "不含税金额",
        "无税金额",
        "金额",
    ),
    "gross_amount": (
        "gross_amount",
        "gross amount",
        "gross",
        "amount incl. vat",
        "价税合计",
        "含税金额",
    ),
    "currency": ("currency", "币种", "币别", "货币"),
}

# When no single line-id column exists, the line id is "<document number>-<line number>".
DOCUMENT_NUMBER_ALIASES = (
    "document_number",
    "document number",
    "invoice number",
    "invoice no",
    "单据编号",
    "单据号",
    "发票号",
    "发票号码",
)
LINE_NUMBER_ALIASES = ("line_number", "line number", "line no", "行号", "序号", "分录号")

CUSTOMER_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": SALES_ALIASES["customer_id"],
    "name": ("name", "customer name", "客户名称", "客户全称", "名称"),
    "group": ("group", "customer group", "客户集团", "集团", "所属集团"),
    "segment": ("segment", "客户分类", "客户类别", "行业", "渠道"),
    "region": ("region", "区域", "大区", "销售区域", "地区"),
    "credit_code": (
        "credit_code",
        "credit code",
        "unified social credit code",
        "统一社会信用代码",
        "信用代码",
    ),
    "tax_number": ("tax_number", "tax number", "税号", "纳税人识别号"),
}

PRODUCT_ALIASES: dict[str, tuple[str, ...]] = {
    "product_id": SALES_ALIASES["product_id"],
    "name": ("name", "product name", "物料名称", "商品名称", "存货名称", "产品名称", "名称"),
    "category": ("category", "品类", "产品类别", "物料分类", "商品类别", "存货分类"),
    "brand": ("brand", "品牌"),
}

ALIASES: dict[FileKind, dict[str, tuple[str, ...]]] = {
    FileKind.SALES: SALES_ALIASES,
    FileKind.CUSTOMERS: CUSTOMER_ALIASES,
    FileKind.PRODUCTS: PRODUCT_ALIASES,
}

# Fanli's document types: a sales line is one of these, as agreements' eligibility lists them.
DOCUMENT_TYPES = ("invoice", "credit_note", "debit_note", "order")

# Document type values as Chinese ERPs write them -> Fanli's document types.
DOCUMENT_TYPE_VALUES: dict[str, str] = {
    "销售发票": "invoice",
    "发票": "invoice",
    "蓝字发票": "invoice",
    "增值税专用发票": "invoice",
    "增值税普通发票": "invoice",
    "红字发票": "credit_note",
    "红字": "credit_note",
    "退货": "credit_note",
    "销售退货": "credit_note",
    "退货单": "credit_note",
    "贷项通知单": "credit_note",
    "借项通知单": "debit_note",
    "销售订单": "order",
    "订单": "order",
}

_IGNORED = re.compile(r"[\s_\-]+")


def normalize_header(header: str) -> str:
    """The form headers are compared in: trimmed, case-folded, without spaces, ``_`` or ``-``."""
    return _IGNORED.sub("", header.replace("\ufeff", "")).casefold()


@dataclass(frozen=True)
class ColumnMapping:
    """A user's mapping: per file kind, Fanli field -> their header; plus document-type values."""

    columns: dict[FileKind, dict[str, str]] = field(default_factory=dict)
    document_types: dict[str, str] = field(default_factory=dict)

    def for_kind(self, kind: FileKind) -> dict[str, str]:
        return self.columns.get(kind, {})


@dataclass(frozen=True)
class ResolvedColumns:
    """Which header feeds each field of one file; fields absent from the file are absent here."""

    fields: dict[str, str]  # fanli field -> header in the file
    line_id_parts: tuple[str, str] | None = None  # (document number, line number) headers
    attributes: tuple[str, ...] = ()  # further headers kept as attributes (dimensions only)

    def header(self, name: str) -> str:
        """The file's header for a field, for messages."""
        if name == "line_id" and self.line_id_parts is not None:
            return "+".join(self.line_id_parts)
        return self.fields.get(name, name)


def resolve_columns(
    headers: Sequence[str],
    kind: FileKind,
    mapping: ColumnMapping | None,
    *,
    source: str,
) -> ResolvedColumns:
    """Match a file's headers to Fanli fields: user mapping first, then the built-in aliases.

    Where several aliases of a field are in the file, the first in the alias list feeds it
    (不含税金额 before 金额). Two headers that read the same once normalised (``Customer ID``
    and ``customer_id``) cannot be told apart: one of them feeding a field is an error, unless
    the mapping names that header exactly."""
    by_normal: dict[str, str] = {}
    twins: dict[str, str] = {}  # normalised header -> its second header in the file
    for header in headers:
        normal = normalize_header(header)
        if normal in by_normal:
            twins.setdefault(normal, header)
        else:
            by_normal[normal] = header
    aliases = ALIASES[kind]
    user = mapping.for_kind(kind) if mapping else {}
    fields: dict[str, str] = {}
    named = set(user.values()) & set(headers)  # chosen exactly, whatever their twins
    for name, header in user.items():
        found = header if header in named else by_normal.get(normalize_header(header))
        if found is None:
            raise InputError.said_at(
                "the mapping names column {header} for {name}, but the file has no such column",
                file=source,
                field=header,
                header=repr(header),
                name=name,
            )
        if found in fields.values():
            other = next(field for field, header in fields.items() if header == found)
            raise InputError.said_at(
                "the mapping names column {header} for both {first} and {second}: a column "
                "feeds one field",
                file=source,
                field=found,
                header=repr(found),
                first=other,
                second=name,
            )
        fields[name] = found
    used = set(fields.values())
    for name, names in aliases.items():
        if name in fields:
            continue
        for alias in names:
            found = by_normal.get(normalize_header(alias))
            if found is not None and found not in used:
                fields[name] = found
                used.add(found)
                break
    line_id_parts: tuple[str, str] | None = None
    if kind is FileKind.SALES and "line_id" not in fields:
        document = _first(by_normal, DOCUMENT_NUMBER_ALIASES, used)
        line = _first(by_normal, LINE_NUMBER_ALIASES, used)
        if document is not None and line is not None:
            line_id_parts = (document, line)
        elif document is not None:
            fields["line_id"] = document  # one line per document: duplicates are reported
        used.update(part for part in (document, line) if part is not None)
    feeding = [*fields.items()]
    if line_id_parts is not None:
        feeding += [("line_id", part) for part in line_id_parts]
    for name, header in feeding:
        twin = twins.get(normalize_header(header))
        if twin is not None and header not in named:
            raise InputError.said_at(
                "columns {first} and {second} both read as {name}: keep one, or name the one "
                "to use in a column mapping",
                file=source,
                field=twin,
                first=repr(header),
                second=repr(twin),
                name=name,
            )
    attributes: tuple[str, ...] = ()
    if kind is not FileKind.SALES:
        # Every other column of a dimension file is an attribute filters can name.
        attributes = tuple(header for header in headers if header not in used and header.strip())
    return ResolvedColumns(fields=fields, line_id_parts=line_id_parts, attributes=attributes)


def _first(by_normal: Mapping[str, str], names: Sequence[str], used: set[str]) -> str | None:
    for alias in names:
        found = by_normal.get(normalize_header(alias))
        if found is not None and found not in used:
            return found
    return None


_KNOWN_FIELDS: dict[FileKind, set[str]] = {
    FileKind.SALES: set(SALES_ALIASES),
    FileKind.CUSTOMERS: set(CUSTOMER_ALIASES),
    FileKind.PRODUCTS: set(PRODUCT_ALIASES),
}


def mapping_from_data(data: Any, *, source: str) -> ColumnMapping:
    """Validate a parsed mapping file (flat or with sections) into a ``ColumnMapping``."""
    if data is None:
        return ColumnMapping()
    if not isinstance(data, dict):
        raise InputError.said_at(
            "a mapping file is a mapping of fanli_field: their header", file=source
        )
    document_types = data.get("document_types", {})
    if not isinstance(document_types, dict) or not all(
        isinstance(key, str | int) and isinstance(value, str)
        for key, value in document_types.items()
    ):
        raise InputError.said_at("document_types maps the file's values to Fanli's", file=source)
    for key, value in document_types.items():
        if value not in DOCUMENT_TYPES:
            raise InputError.said_at(
                "document_types: {value} (for {key}) is not a Fanli document type ({known})",
                file=source,
                value=repr(value),
                key=repr(str(key)),
                known=", ".join(DOCUMENT_TYPES),
            )
    sections = {kind.value for kind in FileKind}
    columns: dict[FileKind, dict[str, str]] = {}
    flat = {key: value for key, value in data.items() if key not in sections | {"document_types"}}
    for kind in FileKind:
        entries: dict[str, Any] = {}
        # A flat entry applies to every kind that knows the field (customer_id is in two).
        entries.update({k: v for k, v in flat.items() if k in _KNOWN_FIELDS[kind]})
        section = data.get(kind.value) or {}
        if not isinstance(section, dict):
            raise InputError.said_at(
                "section {section} must be a mapping", file=source, section=repr(kind.value)
            )
        entries.update(section)
        for name, header in entries.items():
            if not isinstance(header, str | int | Decimal) or isinstance(header, bool):
                raise InputError.said_at(
                    "{section}.{name}: expected a column header",
                    file=source,
                    section=kind.value,
                    name=name,
                )
            if kind is not FileKind.SALES or name in _KNOWN_FIELDS[kind]:
                continue
            raise InputError.said_at("{name}: not a sales field", file=source, name=name)
        columns[kind] = {str(name): str(header) for name, header in entries.items()}
    unknown = [key for key in flat if not any(key in _KNOWN_FIELDS[kind] for kind in FileKind)]
    if unknown:
        known = ", ".join(sorted(set().union(*_KNOWN_FIELDS.values())))
        raise InputError.said_at(
            "{name}: not a Fanli field (known: {known})", file=source, name=unknown[0], known=known
        )
    return ColumnMapping(
        columns=columns,
        document_types={str(key): value for key, value in document_types.items()},
    )


def load_mapping(path: Path) -> ColumnMapping:
    """Read a YAML (or JSON) mapping file; a field given twice is refused, not overwritten."""
    return mapping_from_data(read_document(path), source=str(path))
