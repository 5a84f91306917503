"""A seeded synthetic store for the periodic audit: a clean programme with anomalies planted.

Eighteen wholesale customers (W01..W18) buy under programme P: monthly rebate periods, tiers
from 1% to 3%. Everything is done through the services, on a timeline from January to March
2026, and the settlements are paid on 31 March, in accounting period 2026-03. Then the anomalies
are planted, each on its own customer, in one of two ways:
- through the services where they allow it (a back-dated raise, two settlements split under a
  threshold, an outlier rate, a deviation);
- by editing the database directly where they do not, as a migration, an integration or a
  person with database access could.

``expected`` lists, per detector, the subjects it must find in March; ``expected_april``, in
April, when W19 returns goods. Nothing else may be found.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.service import add_version
from fanli.agreements.terms import Agreement
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.customers.credit_code import check_character
from fanli.customers.models import DueDiligenceKind
from fanli.customers.service import add_due_diligence, register_account, verify_account
from fanli.ledger.service import accrue
from fanli.models import Base
from fanli.sales.service import import_customers, import_products, import_sales
from fanli.settlements import service as settlements
from fanli.settlements.models import Payout, Settlement
from fanli.users.queries import actor, as_actor
from fanli.users.service import create_user
from store.builders import CONTRACT, PEOPLE, POLICY, products_file, write_csv
from store.conftest import Store

JAN = dt.datetime(2026, 1, 2, 9, tzinfo=dt.UTC)
MAR_15 = dt.datetime(2026, 3, 15, 9, tzinfo=dt.UTC)
MAR_20 = dt.datetime(2026, 3, 20, 9, tzinfo=dt.UTC)
CLOSE = dt.datetime(2026, 3, 31, 20, tzinfo=dt.UTC)  # the accrual, proposals and payouts
APRIL = dt.datetime(2026, 4, 6, 9, tzinfo=dt.UTC)
PERIOD = "2026-03"
TIERS = [
    {"from": "0", "to": "50000", "rate": "1"},
    {"from": "50000", "to": "100000", "rate": "1.5"},
    {"from": "100000", "to": "150000", "rate": "2"},
    {"from": "150000", "to": "200000", "rate": "2.5"},
    {"from": "200000", "rate": "3"},
]
# March net sales per customer (None: no March sales); W13 buys in January and February.
MARCH = {
    "W01": 40_000, "W02": 60_000, "W03": 120_000, "W04": 160_000, "W05": 210_000,
    "W06": 40_000, "W07": 60_000, "W08": 120_000, "W09": 160_000, "W10": 210_000,
    "W11": 40_000, "W12": 60_000, "W13": None, "W14": 120_000, "W15": 160_000,
    "W16": 40_000, "W17": None, "W18": 60_000, "W19": 105_000,
}  # fmt: skip
AUDIT_POLICY = {
    **POLICY,
    "max_settlement": [{"segment": "批发", "amount": "9500"}, {"amount": "1000000"}],
    "due_diligence": {"required": ["blacklist_check"]},
}


def credit_code(n: int) -> str:
    first17 = f"9131000{n:010d}"
    return first17 + check_character(first17)


def terms(code: str, tiers: list[dict[str, str]], **extra: Any) -> Agreement:
    return Agreement.model_validate(
        {
            "id": code,
            "name": f"programme {code}",
            "term": {"start": "2026-01-01", "end": "2027-01-01"},
            "rebate": {"form": "percent", "basis": "net", "tiers": tiers},
            "periods": {"kind": "month"},
            "contract": CONTRACT,
            **extra,
        }
    )


def only(code: str, customer: str, rate: str, **extra: Any) -> Agreement:
    """An agreement with one customer, at one rate."""
    return terms(code, [{"from": "0", "rate": rate}], parties={"counterparty": customer}, **extra)


@dataclass
class AuditWorld:
    store: Store
    directory: Path
    who: dict[str, Any] = field(default_factory=dict)
    settlement: dict[str, int] = field(default_factory=dict)  # customer -> its March settlement
    payout: dict[str, int] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)  # "R", "B2", "M" -> version id
    planted: dict[str, int] = field(default_factory=dict)  # ids made by editing the database
    split: list[int] = field(default_factory=list)

    # ---- the clean programme, through the services ------------------------------------------

    def build(self) -> AuditWorld:
        self._people_and_policy()
        self._customers()
        self._agreements()
        self._sales()
        with self.store.work() as session:
            accrue(session, self.store.facts, as_of=CLOSE.date(), actor=self.who["fay"], now=CLOSE)
        for code, volume in MARCH.items():
            if volume is not None:
                self._settle(code, dt.date(2026, 3, 1))
        # W13 settles January and February on the same day: each under 10,000, 18,000 in all.
        self.split = [
            self._settle("W13", dt.date(2026, 1, 1), key="W13-jan"),
            self._settle("W13", dt.date(2026, 2, 1), key="W13-feb"),
        ]
        self._plant()
        self._returns()
        return self

    def _people_and_policy(self) -> None:
        with self.store.work() as session:
            admin = as_actor(
                create_user(
                    session, "admin", name="Admin", roles=["administrator"], actor=None, now=JAN
                )
            )
            for code, roles, limit in PEOPLE[1:]:
                create_user(
                    session,
                    code,
                    name=code.title(),
                    roles=roles,
                    approval_limit=Decimal(limit) if limit else None,
                    actor=admin,
                    now=JAN,
                )
        with self.store.work() as session:
            self.who = {code: actor(session, code) for code, _roles, _limit in PEOPLE}
            publish(session, Policy.model_validate(AUDIT_POLICY), actor=self.who["cora"], now=JAN)

    def _customers(self) -> None:
        rows = [
            (code, f"测试批发{n:02d}有限公司", credit_code(n), "批发", "华东")
            for n, code in enumerate(MARCH, start=1)
        ]
        path = write_csv(
            self.directory / "customers.csv",
            ["客户编码", "客户名称", "统一社会信用代码", "客户分类", "区域"],
            rows,
        )
        with self.store.work() as session:
            import_customers(session, self.store.facts, path, actor=self.who["fay"], now=JAN)
            import_products(
                session,
                self.store.facts,
                products_file(self.directory),
                actor=self.who["fay"],
                now=JAN,
            )
            for code in MARCH:
                add_due_diligence(
                    session,
                    code,
                    kind=DueDiligenceKind.BLACKLIST_CHECK,
                    passed=True,
                    reference=f"BL-{code}",
                    checked_on=JAN.date(),
                    expires_on=dt.date(2027, 1, 1),
                    actor=self.who["cora"],
                    now=JAN,
                )
            account = register_account(
                session,
                "W01",
                bank_name="工商银行",
                account_number="6222000001",
                holder_name="测试批发01有限公司",
                country="CN",
                actor=self.who["fay"],
                now=JAN,
            )
            verify_account(session, account.id, actor=self.who["fred"], now=JAN)
            self.planted["W01_account"] = account.id

    def _activate(self, agreement: Agreement, now: dt.datetime, **submit: Any) -> int:
        with self.store.work() as session:
            version = add_version(session, agreement, actor=self.who["sam"], now=now)
            review.submit(session, version.id, actor=self.who["sam"], now=now, **submit)
            review.approve(
                session,
                version.id,
                terms_hash=version.terms_hash,
                actor=self.who["abe"],
                now=now,
            )
            if version.status != "active":  # a deviation: compliance approves as well
                review.approve(
                    session,
                    version.id,
                    terms_hash=version.terms_hash,
                    actor=self.who["cora"],
                    now=now,
                )
            return version.id

    def _agreements(self) -> None:
        self._activate(terms("P", TIERS), JAN)
        # W16 has an extra 8% of its own: the outlier.
        self._activate(
            terms("X", [{"from": "0", "rate": "8"}], parties={"counterparty": "W16"}), JAN
        )
        self.version["R"] = self._activate(
            terms("R", [{"from": "0", "rate": "0.5"}], parties={"counterparty": "W11"}), JAN
        )
        # W12: 0.5% from January, raised to 1.5% on 15 March, effective from 1 February.
        self._activate(
            terms("B", [{"from": "0", "rate": "0.5"}], parties={"counterparty": "W12"}), JAN
        )
        self.version["B2"] = self._activate(
            terms(
                "B",
                [{"from": "0", "rate": "1.5"}],
                parties={"counterparty": "W12"},
                effective_from="2026-02-01",
            ),
            MAR_15,
        )
        # W18: 12%, two points over the policy, approved as a deviation; it starts in April.
        self.version["M"] = self._activate(
            terms(
                "M",
                [{"from": "0", "rate": "12"}],
                parties={"counterparty": "W18"},
                term={"start": "2026-04-01", "end": "2027-01-01"},
            ),
            MAR_20,
            justification="strategic account, agreed by the sales director",
        )

    def _sales(self) -> None:
        lines = []
        for code, volume in MARCH.items():
            if volume is not None:
                lines.append((f"L-{code}-3", code, "P1", "2026-03-10", "1", f"{volume}.00"))
        lines += [
            ("L-W13-1", "W13", "P1", "2026-01-10", "1", "300000.00"),
            ("L-W13-2", "W13", "P1", "2026-02-10", "1", "300000.00"),
        ]
        path = write_csv(
            self.directory / "sales.csv",
            ["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"],
            lines,
        )
        with self.store.work() as session:
            import_sales(session, self.store.facts, path, actor=self.who["fay"], now=JAN)

    def _settle(self, code: str, start: dt.date, *, key: str | None = None) -> int:
        key = key or code
        with self.store.work() as session:
            proposed = settlements.propose(
                session,
                self.store.facts,
                agreement_code="P",
                beneficiary=code,
                period_start=start,
                idempotency_key=f"propose-{key}",
                actor=self.who["fay"],
                now=CLOSE,
            )
        with self.store.work() as session:
            settlements.approve(
                session,
                self.store.facts,
                proposed.id,
                idempotency_key=f"approve-{key}",
                actor=self.who["amy"],
                now=CLOSE,
            )
        with self.store.work() as session:
            paid = settlements.pay(
                session,
                self.store.facts,
                proposed.id,
                document_number=f"CN-{key}",
                idempotency_key=f"pay-{key}",
                actor=self.who["fay"],
                now=CLOSE,
            )
        if start.month == 3:
            self.settlement[code], self.payout[code] = proposed.id, paid.id
        return proposed.id

    def _returns(self) -> None:
        """W19 crossed 100,000 in March by 5,000, was paid at 2%, and returns 10,000 in April."""
        path = write_csv(
            self.directory / "returns.csv",
            ["line_id", "customer_id", "product_id", "invoice_date", "quantity", "net_amount"],
            [("R-W19-4", "W19", "P1", "2026-04-05", "-1", "-10000.00")],
        )
        with self.store.work() as session:
            import_sales(session, self.store.facts, path, actor=self.who["fay"], now=APRIL)

    # ---- the anomalies the services refuse, planted in the database --------------------------

    def _plant(self) -> None:
        with self.store.engine.begin() as db:
            run = db.execute
            # W06: its approval is gone.
            run(text("DELETE FROM settlement_approval WHERE settlement_id = :s"),
                {"s": self.settlement["W06"]})  # fmt: skip
            # W07: paid 500 more than approved.
            run(text("UPDATE payout SET amount = amount + :d WHERE id = :p"),
                {"d": _stored(db, Decimal(500)), "p": self.payout["W07"]})  # fmt: skip
            # W08: paid by transfer into W01's account.
            run(text("UPDATE payout SET form = 'bank_transfer', bank_account_id = :a "
                     "WHERE id = :p"),
                {"a": self.planted["W01_account"], "p": self.payout["W08"]})  # fmt: skip
            # W10: settled and paid at 9,800, above the 9,500 the policy allows the segment.
            for table, key in (("settlement", "settlement"), ("payout", "payout")):
                run(text(f"UPDATE {table} SET amount = :a WHERE id = :i"),
                    {"a": _stored(db, Decimal(9800)), "i": getattr(self, key)["W10"]})  # fmt: skip
            # W11: agreement R's rate raised to 12% in place, never reviewed.
            run(text("UPDATE agreement_version SET terms = :t WHERE id = :v"),
                {"t": terms("R", [{"from": "0", "rate": "12"}],
                            parties={"counterparty": "W11"}).model_dump_json(by_alias=True),
                 "v": self.version["R"]})  # fmt: skip
            # W14: the blacklist check had expired before the payout.
            run(text("UPDATE due_diligence SET expires_on = :d WHERE customer_id = "
                     "(SELECT id FROM customer WHERE code = 'W14')"),
                {"d": dt.date(2026, 3, 15)})  # fmt: skip
            # W15: proposed by its own approver.
            run(text("UPDATE settlement SET proposed_by = 'amy' WHERE id = :s"),
                {"s": self.settlement["W15"]})  # fmt: skip
        self.planted["W09_duplicate"] = self._copy_payout("W09", with_lines=True)
        self.planted["W17_lump"] = self._copy_payout(
            "W01", with_lines=False, beneficiary="W17", amount=Decimal(5000)
        )

    def _copy_payout(
        self,
        source: str,
        *,
        with_lines: bool,
        beneficiary: str | None = None,
        amount: Decimal | None = None,
    ) -> int:
        """A second settlement and payout made by inserting rows: a copy of ``source``'s, with
        its approvals, for ``beneficiary`` and ``amount`` if given. The payout's id."""
        with self.store.work() as session:
            original = session.get(Settlement, self.settlement[source])
            paid = session.get(Payout, self.payout[source])
            assert original is not None
            assert paid is not None
            copy = Settlement(
                **{
                    column.key: getattr(original, column.key)
                    for column in Settlement.__table__.columns
                    if column.key not in {"id", "open_key"}
                }
            )
            if beneficiary:
                copy.beneficiary = beneficiary
            if amount is not None:
                copy.amount = amount
            session.add(copy)
            session.flush()
            db = session.connection()
            for table in ("settlement_approval",) + (("settlement_line",) if with_lines else ()):
                columns = [c.name for c in _table(table).columns if c.name not in {"id"}]
                listed = ", ".join(columns)
                chosen = ", ".join(":s" if c == "settlement_id" else c for c in columns)
                db.execute(
                    text(f"INSERT INTO {table} ({listed}) SELECT {chosen} FROM {table} "
                         "WHERE settlement_id = :source"),
                    {"s": copy.id, "source": original.id},
                )  # fmt: skip
            entry = db.execute(
                text("INSERT INTO journal_entry (accounting_period_id, kind, entry_date, memo,"
                     " posted_at) SELECT accounting_period_id, kind, entry_date, 'planted',"
                     " posted_at FROM journal_entry WHERE id = :e RETURNING id"),
                {"e": paid.journal_entry_id},
            ).scalar_one()  # fmt: skip
            twin = Payout(
                settlement_id=copy.id,
                approved_hash=copy.approved_hash,
                journal_entry_id=entry,
                form=paid.form,
                amount=copy.amount if amount is not None else paid.amount,
                document_number=f"{paid.document_number}-2",
                original_invoices=[],
                paid_by=paid.paid_by,
                paid_at=paid.paid_at,
            )
            session.add(twin)
            session.flush()
            if beneficiary:
                self.settlement[beneficiary], self.payout[beneficiary] = copy.id, twin.id
            return twin.id

    def agreement_version(self, code: str, number: int) -> int:
        with self.store.work() as session:
            found = session.scalar(
                select(AgreementVersion.id)
                .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
                .where(AgreementRecord.code == code, AgreementVersion.version == number)
            )
            assert found is not None
            return found


def _stored(db: Any, amount: Decimal) -> Any:
    """An amount as the database stores it (SQLite keeps ten-thousandths as integers)."""
    return int(amount * 10_000) if db.dialect.name == "sqlite" else amount


def _table(name: str) -> Any:
    return Base.metadata.tables[name]


def expected(world: AuditWorld) -> dict[str, set[str]]:
    """Per detector, the fingerprints the planted anomalies must produce, and no others."""
    p = world.payout
    return {
        "approval_chain": {f"payout:{p['W06']}"},
        "amount_mismatch": {f"payout:{p['W07']}"},
        "payee_account": {f"payout:{p['W08']}"},
        "duplicate_payouts": {f"payouts:{p['W09']},{world.planted['W09_duplicate']}"},
        "above_policy": {f"payout:{p['W10']}", f"version:{world.version['R']}"},
        "backdated_terms": {f"version:{world.version['B2']}"},
        "split_settlements": {"settlements:" + ",".join(map(str, world.split))},
        "lapsed_due_diligence": {f"payout:{p['W14']}"},
        "segregation_of_duties": {f"payout:{p['W15']}"},
        "rate_outliers": {f"customer:W16:{PERIOD}"},
        "round_lump_sums": {f"payout:{p['W17']}"},
        "manual_overrides": {f"version:{world.version['M']}"},
    }


def expected_april(world: AuditWorld) -> dict[str, set[str]]:
    """April: W19's return after its March payout, and R's unreviewed rate, still active."""
    return {
        "tier_gaming": {f"settlement:{world.settlement['W19']}:returns:2026-04"},
        "above_policy": {f"version:{world.version['R']}"},
    }
