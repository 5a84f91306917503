"""GL export: the journal of one accounting period as CSV or Excel, in the company's accounts.

A chart of accounts (YAML or JSON) maps Fanli's accounts to account codes, optionally per
entry kind, and names the cost centre. Each journal line (a posting from one account to another)
becomes two rows, its debit and its credit, with the customer, the agreement and the
agreement's currency. The last rows hold the totals, one per currency, which tie out to the
ledger: debits equal credits, and per account they equal the period's movement in that
currency in ``queries.account_movements``. Amounts in two currencies are never added up.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Self

from openpyxl import Workbook
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.files import read_document
from fanli.agreements.queries import DEFAULT_CURRENCY, version_currencies
from fanli.audit.service import record
from fanli.customers.models import Customer
from fanli.kit.errors import InputError, Month, said
from fanli.kit.money import FACT_SCALE, ZERO, amount_text, minor_unit
from fanli.kit.sheets import append_text_safe, inert
from fanli.ledger.models import (
    Account,
    AccountingPeriod,
    AccrualRun,
    EntryKind,
    JournalEntry,
    JournalLine,
    PeriodStatus,
    RebatePeriod,
)
from fanli.ledger.periods import PeriodError, parse_code
from fanli.sales.dimensions import master_after
from fanli.sales.models import BatchKind
from fanli.sales.store import FactStore
from fanli.users.actor import Actor, Role, require


class ChartOfAccounts(BaseModel):
    """Account codes for Fanli's accounts; ``entry_kinds`` overrides them per entry kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: dict[Account, str] = {
        Account.CONTRA_REVENUE: "6001.05",  # 主营业务收入-销售折让
        Account.LIABILITY: "2241.01",  # 其他应付款-应付返利
        Account.RECEIVABLE: "1122",  # 应收账款
        Account.BANK: "1002",  # 银行存款
        Account.REBATE_BALANCE: "2241.02",  # 其他应付款-返利账户
    }
    entry_kinds: dict[EntryKind, dict[Account, str]] = {}  # a misspelt kind is refused
    cost_centre: str | None = None

    def code(self, account: str, kind: str) -> str:
        override = self.entry_kinds.get(EntryKind(kind), {})
        return override.get(Account(account)) or self.accounts[Account(account)]

    @model_validator(mode="after")
    def _each_account_its_own_code(self) -> Self:
        """Every account Fanli posts to has a code, and no two share one, for every kind of
        entry. A chart that named only some accounts had exported the others under Fanli's
        own names; one code for two accounts makes a posting debit and credit the same
        account."""
        missing = [account.value for account in Account if not self.accounts.get(account)]
        if missing:
            raise ValueError(
                f"accounts: no code for {', '.join(missing)}: a chart maps every account "
                f"Fanli posts to ({', '.join(account.value for account in Account)})"
            )
        for kind, override in [(None, {}), *self.entry_kinds.items()]:
            where = "accounts" if kind is None else f"entry_kinds.{kind.value}"
            empty = [account.value for account, code in override.items() if not code]
            if empty:
                raise ValueError(f"{where}: no code for {', '.join(empty)}")
            sharing: dict[str, list[str]] = {}
            for account in Account:
                code = override.get(account) or self.accounts[account]
                sharing.setdefault(code, []).append(account.value)
            for code, accounts in sharing.items():
                if len(accounts) > 1:
                    raise ValueError(
                        f"{where}: {' and '.join(accounts)} share the code {code}: a posting "
                        "between them would debit and credit one account"
                    )
        return self


def load_chart(path: Path) -> ChartOfAccounts:
    data = read_document(path)
    try:
        return ChartOfAccounts.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InputError(message, file=str(path), field=field or None) from None


_NONE = Decimal("0.0000")  # the empty side of a row


def csv_amount(amount: Decimal, currency: str = DEFAULT_CURRENCY) -> str:
    """An amount as the CSV writes it: with its currency's places (two for CNY, none for JPY),
    and more only where the amount has them (the ledger keeps four), as the sheet's number
    format shows it. Nothing is rounded: 194.69 held as 194.6900 is written 194.69, 0.005
    stays 0.005."""
    return amount_text(amount, currency)


def _amount_format(currency: str) -> str:
    """The sheet's number format for amounts in ``currency``: its places, more where an
    amount has them (up to the ledger's four). A currency without places shows whole units
    (a format with optional places only would end them with a point); the cell holds the
    amount as it is either way."""
    places = minor_unit(currency)
    return "#,##0" + ("." + "0" * places + "#" * (FACT_SCALE - places) if places else "")


HEADER = (
    "entry",
    "entry_date",
    "accounting_period",
    "entry_kind",
    "account_code",
    "fanli_account",
    "debit",
    "credit",
    "currency",  # the agreement's: amounts in two currencies never add up
    "cost_centre",
    "customer_code",
    "customer_name",
    "agreement",
    "rebate_period_start",
    # The period's last day, as the screens show it (the store keeps the exclusive end).
    "rebate_period_last_day",
    "memo",
)


_DATE_COLUMNS = ("entry_date", "rebate_period_start", "rebate_period_last_day")


@dataclass(frozen=True)
class GlExport:
    path: Path
    rows: int
    totals: dict[str, tuple[Decimal, Decimal]]  # currency -> (debit, credit)
    # (account code, currency) -> (debit, credit)
    by_account: dict[tuple[str, str], tuple[Decimal, Decimal]]


def _customer_names(session: Session, store: FactStore, period: AccountingPeriod) -> dict[str, str]:
    """Each customer's legal name as the export shows it: for a closed period, as the run it
    closed after saw it, so that exporting a closed period again gives the same file after a
    customer is renamed; for an open one, as it is now."""
    names: dict[str, str] = dict(session.execute(select(Customer.code, Customer.legal_name)).all())
    run = (
        session.get(AccrualRun, period.closed_after_run_id)
        if period.status == PeriodStatus.CLOSED and period.closed_after_run_id is not None
        else None
    )
    if run is not None:
        kept = master_after(
            session, store, BatchKind.CUSTOMERS, run.inputs.get("dimension_batches", [])
        )
        if kept is not None:  # else (a snapshot removed by hand) the names as they are now
            codes, legal_names = kept.column("customer_id"), kept.column("name")
            names.update(zip(codes.to_pylist(), legal_names.to_pylist(), strict=True))
    return names


def export_gl(
    session: Session,
    store: FactStore,
    period_code: str,
    out: Path,
    *,
    chart: ChartOfAccounts | None = None,
    actor: Actor,
    now: dt.datetime,
) -> GlExport:
    """Write the period's journal lines to ``out`` (``.csv`` or ``.xlsx``); the export is
    audited with its totals, so what left the system is on record. A closed period's export
    is the same file each time (its customers' names as when it closed)."""
    require(
        actor,
        Role.FINANCE,
        Role.INTERNAL_AUDITOR,
        Role.EXTERNAL_AUDITOR,
        to=said("export the general ledger"),
    )
    chart = chart or ChartOfAccounts()
    parse_code(period_code)  # 2026-13 is no month, rather than a period not yet opened
    period = session.scalar(select(AccountingPeriod).where(AccountingPeriod.code == period_code))
    if period is None:
        raise PeriodError.said("there is no accounting period {period}", period=Month(period_code))
    names = _customer_names(session, store, period)
    currencies = version_currencies(session)
    lines = session.execute(
        select(JournalEntry, JournalLine, RebatePeriod)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(RebatePeriod, RebatePeriod.of(JournalLine))
        .where(JournalEntry.accounting_period_id == period.id)
        .order_by(JournalEntry.id, JournalLine.id)
    ).all()
    rows: list[tuple[object, ...]] = []
    totals: dict[str, tuple[Decimal, Decimal]] = {}
    by_account: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for entry, line, rebate_period in lines:
        currency = currencies.get(line.version_id, DEFAULT_CURRENCY)
        # Each posting line is shown as its debit row and its credit row.
        for account, debit, credit in (
            (line.debit_account, line.amount, _NONE),
            (line.credit_account, _NONE, line.amount),
        ):
            code = chart.code(account, entry.kind)
            held_debit, held_credit = by_account.get((code, currency), (ZERO, ZERO))
            by_account[code, currency] = (held_debit + debit, held_credit + credit)
            total_debit, total_credit = totals.get(currency, (ZERO, ZERO))
            totals[currency] = (total_debit + debit, total_credit + credit)
            rows.append(
                (
                    entry.id,
                    entry.entry_date.isoformat(),
                    period.code,
                    entry.kind,
                    code,
                    account,
                    debit,
                    credit,
                    currency,
                    chart.cost_centre or "",
                    line.beneficiary,
                    names.get(line.beneficiary, ""),
                    rebate_period.agreement_code,
                    rebate_period.period_start.isoformat(),
                    (rebate_period.period_end - dt.timedelta(days=1)).isoformat(),
                    entry.memo,
                )
            )
    # One total per currency, each tying out to the ledger in that currency.
    ends = [
        ("total", "", period.code, "", "", "", debit, credit, currency, *[""] * 7)
        for currency, (debit, credit) in sorted(totals.items())
    ]
    where = HEADER.index("currency")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".xlsx":
        workbook = Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.title = f"GL {period.code}"
        sheet.append(HEADER)
        dates = {HEADER.index(name) for name in _DATE_COLUMNS}
        amounts = {HEADER.index("debit"), HEADER.index("credit")}
        for row in [*rows, *ends]:
            # Amounts go in as numbers, which Excel holds as doubles: exact to 15 significant
            # digits (every amount below 100 billion, to the 0.0001). The CSV keeps every digit.
            # Days go in as dates, so that a GL import or a filter reads them as such.
            append_text_safe(
                sheet,
                [
                    dt.date.fromisoformat(value)
                    if position in dates and isinstance(value, str) and value
                    else value
                    for position, value in enumerate(row)
                ],
            )
            money = _amount_format(str(row[where]))
            for position in dates | amounts:
                cell = sheet.cell(row=sheet.max_row, column=position + 1)
                cell.number_format = "yyyy-mm-dd" if position in dates else money
        workbook.save(out)
    else:
        with out.open("w", newline="", encoding="utf-8-sig") as stream:
            writer = csv.writer(stream)
            writer.writerow(HEADER)
            for row in [*rows, *ends]:
                # Text from users (a customer's name) never starts a formula in Excel.
                writer.writerow(
                    csv_amount(value, str(row[where]))
                    if isinstance(value, Decimal)
                    else inert(value)
                    for value in row
                )
    record(
        session,
        type="ledger.gl.exported",
        actor=actor.code,
        entity_type="accounting_period",
        entity_id=period.code,
        inputs={"format": out.suffix.lower().lstrip("."), "chart": chart.model_dump(mode="json")},
        outcome={
            "rows": len(rows),
            "totals": {
                currency: {"debit": debit, "credit": credit}
                for currency, (debit, credit) in sorted(totals.items())
            },
        },
        now=now,
    )
    return GlExport(out, len(rows), totals, by_account)
