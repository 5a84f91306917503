"""Routes over the store: products, imports and batches, agreements, accrual runs, periods,
the journal and the GL export, policy publication, bank accounts, due diligence, rebate
balances, customer statements, users and delegations. Thin: one service or query each."""

from __future__ import annotations

import datetime as dt
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.files import agreements_from_data
from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.queries import version_currencies
from fanli.agreements.service import add_version, discard_draft, draft_of, terminate
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.service import publish
from fanli.config import company_now
from fanli.customers.models import BankAccount, DueDiligenceKind, DueDiligenceRecord
from fanli.customers.queries import bank_accounts, customer_by_code
from fanli.customers.service import (
    add_due_diligence,
    assign,
    register_account,
    verify_account,
)
from fanli.interfaces.uploads import as_sent, upload_name
from fanli.kit.errors import InputError, NotFoundError
from fanli.kit.money import amount_text
from fanli.ledger.export import export_gl
from fanli.ledger.models import (
    AccountingPeriod,
    AccrualRun,
    JournalEntry,
    JournalLine,
    RebatePeriod,
)
from fanli.ledger.periods import close_period, parse_code
from fanli.ledger.queries import accounting_periods, statement_rows
from fanli.ledger.service import accrue
from fanli.products.models import Product
from fanli.sales.files import InputFileError
from fanli.sales.mapping import load_mapping
from fanli.sales.models import BatchKind, BatchStatus, ImportBatch
from fanli.sales.service import (
    import_customers,
    import_products,
    import_sales,
    void_batch,
    write_issue_report,
)
from fanli.sales.store import FactStore
from fanli.settlements import balance as balances
from fanli.settlements import service as settlements
from fanli.settlements import statements as statement_service
from fanli.settlements.models import DisputeOutcome, StatementDecision, StatementResponse
from fanli.settlements.queries import approval_status
from fanli.settlements.queries import settlements as list_settlements
from fanli.users.auth import enrol_second_factor, provisioning_uri, set_password
from fanli.users.models import User
from fanli.users.service import create_user, delegate, disable_user, revoke_delegation

from .deps import (
    NOT_MODIFIED,
    Authorized,
    Db,
    Facts,
    Id,
    IdempotencyKey,
    Limit,
    Offset,
    cached_json,
    check_customer,
    paged,
    visible_customers,
    visible_settlement,
    window,
)
from .schemas import (
    ERRORS,
    AccrualRequest,
    AgreementOut,
    ApprovalOut,
    ApprovalStatusOut,
    ApproveRequest,
    AssignmentIn,
    BalanceDecisionIn,
    BalanceOut,
    BalanceUseIn,
    BalanceUseOut,
    BankAccountIn,
    BankAccountOut,
    BatchOut,
    CreditOut,
    CurrencyChange,
    DelegationIn,
    DelegationOut,
    DisputeAnswerIn,
    DisputeAnswerOut,
    DueDiligenceIn,
    DueDiligenceOut,
    ErrorOut,
    ExpiryIn,
    ExpiryOut,
    ImportOut,
    JournalLineOut,
    Page,
    PasswordIn,
    PeriodOut,
    PolicyOut,
    ProductOut,
    ReasonRequest,
    RunListOut,
    RunOut,
    SecondFactorOut,
    SettlementOut,
    Statement,
    StatementAnswerIn,
    StatementLine,
    StatementResponseOut,
    SubmitRequest,
    TerminationIn,
    UserIn,
    UserOut,
    VersionOut,
    VoidOut,
)
from .strict_json import StrictJsonRoute

router = APIRouter(prefix="/api", responses=ERRORS, route_class=StrictJsonRoute)

MAX_UPLOAD = 2 << 30  # 2 GiB
MAX_MAPPING = 1 << 20  # a column mapping is a few lines of YAML


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# ---- products ---------------------------------------------------------------------------------


@router.get("/products", response_model=Page[ProductOut])
def products(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    category: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[ProductOut]:
    query = select(Product)
    if category is not None:
        query = query.where(Product.category == category)
    page, total = window(session, query, Product.code, offset, limit)
    rows = session.scalars(page).all()
    return Page[ProductOut](
        items=[ProductOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/products/{code}", response_model=ProductOut, responses={404: {}})
def product(code: str, _access: Authorized, session: Db) -> ProductOut:
    found = session.scalar(select(Product).where(Product.code == code))
    if found is None:
        raise NotFoundError(f"there is no product {code}")
    return ProductOut.model_validate(found)


# ---- imports and batches ----------------------------------------------------------------------


@router.post(
    "/imports/{kind}",
    response_model=ImportOut,
    status_code=201,
    responses={
        200: {"model": ImportOut, "description": "imported before: its batch, nothing created"},
        409: {
            "model": ErrorOut,
            "description": "the file was imported as a batch that was voided since",
        },
        422: {
            "model": ErrorOut,
            "description": "every bad row: file, row, field, reason (with report=csv|xlsx, "
            "the same list as a file)",
            "content": {"text/csv": {}, _XLSX: {}},
        },
    },
)
def upload(  # noqa: PLR0917 - FastAPI maps parameters to path, file, query and dependencies
    kind: BatchKind,
    file: Annotated[UploadFile, File(description="CSV (UTF-8 or GBK), Excel or Parquet")],
    access: Authorized,
    session: Db,
    store: Facts,
    response: Response,
    mapping: Annotated[
        UploadFile | None,
        File(
            description="a column mapping: the YAML of the command line's --mapping file, "
            "naming the file's header for each Fanli field"
        ),
    ] = None,
    report: Annotated[str | None, Query(pattern="^(csv|xlsx)$")] = None,
    idempotency_key: IdempotencyKey = None,
) -> ImportOut | Response:
    """Import a file: all rows or none, its columns matched by the built-in names (Chinese
    ERP headers included) or by a ``mapping``. A refused file answers 422 listing every bad
    row, or with ``report=csv|xlsx`` the same list as a file to download. A file imported
    before answers 200 with ``already_imported`` and its batch: nothing was created. So does a
    retry with the same ``Idempotency-Key``; an import's key names one file whoever sends it,
    and the same key with another file is refused."""
    name = upload_name(file.filename)
    importer = {
        BatchKind.CUSTOMERS: import_customers,
        BatchKind.PRODUCTS: import_products,
        BatchKind.SALES: import_sales,
    }[kind]
    with tempfile.TemporaryDirectory(prefix="fanli-upload-") as folder:
        path = Path(folder) / name
        with path.open("wb") as out:
            size = 0
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise InputError("the file is larger than 2 GiB", file=name)
                out.write(chunk)
        columns = None
        if mapping is not None:
            mapping_name = upload_name(mapping.filename or "mapping.yaml")
            mapping_path = Path(folder) / "mapping" / mapping_name
            mapping_path.parent.mkdir()
            mapping_path.write_bytes(mapping.file.read(MAX_MAPPING + 1))
            if mapping_path.stat().st_size > MAX_MAPPING:
                raise InputError("the mapping is larger than 1 MiB", file=mapping_name)
            try:
                columns = load_mapping(mapping_path)
            except InputError as bad:
                raise as_sent(bad, mapping_path, mapping_name) from None
        try:
            outcome = importer(
                session,
                store,
                path,
                mapping=columns,
                actor=access.actor,
                now=company_now(),
                idempotency_key=idempotency_key,
            )
        except InputFileError as bad:
            refused = as_sent(bad, path, name)
            if report is None:
                raise refused from None
            out_path = Path(folder) / f"problems.{report}"
            write_issue_report(refused, out_path)
            media = "text/csv" if report == "csv" else _XLSX
            return Response(
                out_path.read_bytes(),
                status_code=422,
                media_type=media,
                headers={"Content-Disposition": f'attachment; filename="problems.{report}"'},
            )
        except InputError as bad:
            raise as_sent(bad, path, name) from None  # the sender's name, not the server's copy
    if outcome.already_imported:
        response.status_code = 200
    return ImportOut(
        batch_id=outcome.batch_id,
        kind=outcome.kind,
        rows=outcome.rows,
        already_imported=outcome.already_imported,
        inserted=outcome.inserted,
        updated=outcome.updated,
        dated_ahead=outcome.dated_ahead,
        latest=outcome.latest,
    )


@router.get("/batches", response_model=Page[BatchOut])
def batch_list(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    kind: Annotated[BatchKind | None, Query()] = None,
    status: Annotated[BatchStatus | None, Query()] = None,
) -> Page[BatchOut]:
    """Import batches, newest first."""
    query = select(ImportBatch)
    if kind is not None:
        query = query.where(ImportBatch.kind == kind)
    if status is not None:
        query = query.where(ImportBatch.status == status)
    return paged(session, query, ImportBatch.id.desc(), offset, limit, shape=BatchOut)


@router.post("/batches/{batch_id}/void", response_model=VoidOut)
def batch_void(
    batch_id: Id, body: ReasonRequest, access: Authorized, session: Db, store: Facts
) -> VoidOut:
    """Void a sales batch. ``returns_left`` names the returns in other batches that name its
    lines: they keep reducing rebates until those sales are imported again or they are voided."""
    done = void_batch(
        session, store, batch_id, reason=body.reason, actor=access.actor, now=company_now()
    )
    return VoidOut.model_validate(
        {
            **BatchOut.model_validate(done.batch).model_dump(),
            "returns_left": [
                {"batch_id": r.batch_id, "line_id": r.line_id} for r in done.returns_left
            ],
        }
    )


# ---- agreements -------------------------------------------------------------------------------


def _agreement_out(session: Db, record: AgreementRecord) -> AgreementOut:
    versions = session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id == record.id)
        .order_by(AgreementVersion.version)
    ).all()
    return AgreementOut(
        code=record.code,
        name=record.name,
        status=record.status,
        versions=[VersionOut.model_validate(v) for v in versions],
    )


def _agreement(session: Db, code: str) -> AgreementRecord:
    record = session.scalar(select(AgreementRecord).where(AgreementRecord.code == code))
    if record is None:
        raise NotFoundError(f"there is no agreement {code}")
    return record


@router.get("/agreements", response_model=Page[AgreementOut])
def agreements(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> Page[AgreementOut]:
    query = select(AgreementRecord)
    if status is not None:
        query = query.where(AgreementRecord.status == status)
    page, total = window(session, query, AgreementRecord.code, offset, limit)
    rows = session.scalars(page).all()
    return Page[AgreementOut](
        items=[_agreement_out(session, r) for r in rows], total=total, offset=offset, limit=limit
    )


@router.get("/agreements/{code}", response_model=AgreementOut, responses={404: {}})
def agreement(code: str, _access: Authorized, session: Db) -> AgreementOut:
    return _agreement_out(session, _agreement(session, code))


@router.post("/agreements", response_model=VersionOut, status_code=201)
def agreement_draft(body: dict[str, Any], access: Authorized, session: Db) -> VersionOut:
    """A new draft version from terms (the same format as the YAML/JSON terms files)."""
    terms = agreements_from_data(body, source="request body")
    if len(terms) != 1:
        raise InputError("send one agreement's terms per request")
    return VersionOut.model_validate(
        add_version(session, terms[0], actor=access.actor, now=company_now())
    )


@router.post("/agreements/{code}/submission", response_model=VersionOut)
def agreement_submit(code: str, body: SubmitRequest, access: Authorized, session: Db) -> VersionOut:
    version = draft_of(session, code)
    review.submit(
        session, version.id, justification=body.justification, actor=access.actor, now=company_now()
    )
    return VersionOut.model_validate(version)


@router.post("/agreements/{code}/approvals", response_model=VersionOut)
def agreement_approve(
    code: str, body: ApproveRequest, access: Authorized, session: Db
) -> VersionOut:
    version = draft_of(session, code)
    review.approve(
        session, version.id, terms_hash=body.terms_hash, actor=access.actor, now=company_now()
    )
    return VersionOut.model_validate(version)


@router.post("/agreements/{code}/rejection", response_model=VersionOut)
def agreement_reject(code: str, body: ReasonRequest, access: Authorized, session: Db) -> VersionOut:
    version = draft_of(session, code)
    review.reject(session, version.id, reason=body.reason, actor=access.actor, now=company_now())
    return VersionOut.model_validate(version)


@router.post("/agreements/{code}/discard", response_model=VersionOut)
def agreement_discard(
    code: str, body: ReasonRequest, access: Authorized, session: Db
) -> VersionOut:
    """Give up the agreement's draft (a submitted version is withdrawn or rejected first). It
    stays on record as discarded; the agreement too, when it had no other version."""
    version = draft_of(session, code)
    discard_draft(session, version.id, reason=body.reason, actor=access.actor, now=company_now())
    return VersionOut.model_validate(version)


# ---- accruals, periods, journal, GL -----------------------------------------------------------


@router.post("/accrual-runs", response_model=RunOut, status_code=201)
def accrual_run(body: AccrualRequest, access: Authorized, session: Db, store: Facts) -> RunOut:
    summary = accrue(
        session, store, as_of=body.as_of, actor=access.actor, now=company_now(), rewind=body.rewind
    )
    one = summary.currency
    return RunOut(
        run_id=summary.run_id,
        as_of=summary.as_of,
        results_stored=summary.results_stored,
        lines_posted=summary.lines_posted,
        net_change=amount_text(summary.net_change, one) if one else None,
        adjusted=amount_text(summary.adjusted, one) if one else None,
        by_currency=[
            CurrencyChange(
                currency=currency,
                net_change=amount_text(change, currency),
                adjusted=amount_text(part, currency),
            )
            for currency, (change, part) in summary.by_currency.items()
        ],
    )


@router.get("/accrual-runs", response_model=Page[RunListOut])
def accrual_runs(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 50,
    as_of: Annotated[dt.date | None, Query(description="Only runs as of this day.")] = None,
) -> Page[RunListOut]:
    """Accrual runs, newest first."""
    query = select(AccrualRun)
    if as_of is not None:
        query = query.where(AccrualRun.as_of == as_of)
    return paged(session, query, AccrualRun.id.desc(), offset, limit, shape=RunListOut)


@router.get("/periods", response_model=list[PeriodOut])
def periods(_access: Authorized, session: Db) -> list[PeriodOut]:
    return [PeriodOut.model_validate(period) for period in accounting_periods(session)]


@router.post("/periods/{code}/close", response_model=PeriodOut)
def period_close(code: str, access: Authorized, session: Db) -> PeriodOut:
    return PeriodOut.model_validate(
        close_period(session, code, actor=access.actor, now=company_now())
    )


def _period(session: Db, code: str) -> AccountingPeriod:
    parse_code(code)  # 2026-13 is no month, rather than a period not yet opened
    period = session.scalar(select(AccountingPeriod).where(AccountingPeriod.code == code))
    if period is None:
        raise NotFoundError(f"there is no accounting period {code}")
    return period


@router.get("/periods/{code}/journal", response_model=Page[JournalLineOut])
def journal(
    code: str, _access: Authorized, session: Db, offset: Offset = 0, limit: Limit = 100
) -> Page[JournalLineOut]:
    period = _period(session, code)
    query = (
        select(JournalEntry, JournalLine, RebatePeriod)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .join(RebatePeriod, RebatePeriod.of(JournalLine))
        .where(JournalEntry.accounting_period_id == period.id)
    )
    page, total = window(session, query, JournalLine.id, offset, limit)
    rows = session.execute(page).all()
    currencies = version_currencies(session)
    items = [
        JournalLineOut(
            entry_id=entry.id,
            entry_kind=entry.kind,
            entry_date=entry.entry_date,
            debit_account=line.debit_account,
            credit_account=line.credit_account,
            amount=amount_text(line.amount, currencies[line.version_id]),
            currency=currencies[line.version_id],
            agreement_code=rebate_period.agreement_code,
            beneficiary=line.beneficiary,
            period_start=rebate_period.period_start,
            period_end=rebate_period.period_end,
        )
        for entry, line, rebate_period in rows
    ]
    return Page[JournalLineOut](items=items, total=total, offset=offset, limit=limit)


@router.post(
    "/periods/{code}/gl-exports",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}, _XLSX: {}}}},
)
def gl_export(
    code: str,
    access: Authorized,
    session: Db,
    store: Facts,
    format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv",
) -> Response:
    """The period's journal in the company's accounts, as CSV or Excel. A POST: each export is
    recorded in the audit trail."""
    _period(session, code)
    with tempfile.TemporaryDirectory(prefix="fanli-gl-") as folder:
        out = Path(folder) / f"gl-{code}.{format}"
        export_gl(session, store, code, out, actor=access.actor, now=company_now())
        content = out.read_bytes()
    media = "text/csv" if format == "csv" else _XLSX
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="gl-{code}.{format}"'},
    )


# ---- policy -----------------------------------------------------------------------------------


@router.post("/policy", response_model=PolicyOut, status_code=201)
def policy_publish(body: dict[str, Any], access: Authorized, session: Db) -> PolicyOut:
    try:
        policy = Policy.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise InputError(first["msg"].removeprefix("Value error, "), field=field) from None
    return PolicyOut.model_validate(publish(session, policy, actor=access.actor, now=company_now()))


# ---- bank accounts and due diligence ----------------------------------------------------------


@router.get("/customers/{code}/bank-accounts", response_model=list[BankAccountOut])
def customer_accounts(code: str, access: Authorized, session: Db) -> list[BankAccountOut]:
    check_customer(session, access, code, f"customer {code}")
    return [BankAccountOut.model_validate(a) for a in bank_accounts(session, code)]


@router.post("/customers/{code}/bank-accounts", response_model=BankAccountOut, status_code=201)
def customer_account_add(
    code: str, body: BankAccountIn, access: Authorized, session: Db
) -> BankAccountOut:
    account = register_account(
        session,
        code,
        bank_name=body.bank_name,
        account_number=body.account_number,
        holder_name=body.holder_name,
        country=body.country,
        actor=access.actor,
        now=company_now(),
    )
    return BankAccountOut.model_validate(account)


@router.post("/bank-accounts/{account_id}/verification", response_model=BankAccountOut)
def account_verify(account_id: Id, access: Authorized, session: Db) -> BankAccountOut:
    if session.get(BankAccount, account_id) is None:
        raise NotFoundError(f"there is no bank account {account_id}")
    return BankAccountOut.model_validate(
        verify_account(session, account_id, actor=access.actor, now=company_now())
    )


@router.get("/customers/{code}/due-diligence", response_model=list[DueDiligenceOut])
def due_diligence(code: str, _access: Authorized, session: Db) -> list[DueDiligenceOut]:
    customer = customer_by_code(session, code)
    records = session.scalars(
        select(DueDiligenceRecord)
        .where(DueDiligenceRecord.customer_id == customer.id)
        .order_by(DueDiligenceRecord.checked_on, DueDiligenceRecord.id)
    ).all()
    return [DueDiligenceOut.model_validate(r) for r in records]


@router.post("/customers/{code}/due-diligence", response_model=DueDiligenceOut, status_code=201)
def due_diligence_add(
    code: str, body: DueDiligenceIn, access: Authorized, session: Db
) -> DueDiligenceOut:
    try:
        kind = DueDiligenceKind(body.kind)
    except ValueError:
        known = ", ".join(k.value for k in DueDiligenceKind)
        raise InputError(f"unknown kind {body.kind!r} (known: {known})", field="kind") from None
    entry = add_due_diligence(
        session,
        code,
        kind=kind,
        passed=body.passed,
        reference=body.reference,
        checked_on=body.checked_on,
        expires_on=body.expires_on,
        note=body.note,
        actor=access.actor,
        now=company_now(),
    )
    return DueDiligenceOut.model_validate(entry)


# ---- rebate balances and statements -----------------------------------------------------------


def _balance_out(session: Session, code: str, day: dt.date) -> BalanceOut:
    found = balances.balance(session, code, day)
    return BalanceOut(
        customer=code,
        available=found.available,
        locked=found.locked,
        credits=[CreditOut.model_validate(c) for c in found.credits],
    )


@router.get("/customers/{code}/balance", response_model=BalanceOut, responses={404: {}})
def customer_balance(code: str, access: Authorized, session: Db) -> BalanceOut:
    check_customer(session, access, code, f"customer {code}")
    return _balance_out(session, code, company_now().date())


@router.post("/balance-uses", response_model=BalanceUseOut, status_code=201)
def balance_use(
    body: BalanceUseIn, access: Authorized, session: Db, idempotency_key: IdempotencyKey = None
) -> BalanceUseOut:
    """Spend rebate balance on an order (locked until a second person decides)."""
    check_customer(session, access, body.customer, f"customer {body.customer}")
    use = balances.request_use(
        session,
        body.customer,
        amount=body.amount,
        order_reference=body.order_reference,
        idempotency_key=idempotency_key,
        actor=access.actor,
        now=company_now(),
    )
    return BalanceUseOut.model_validate(use)


@router.post("/balance-uses/{use_id}/decision", response_model=BalanceUseOut)
def balance_decide(
    use_id: Id,
    body: BalanceDecisionIn,
    access: Authorized,
    session: Db,
    idempotency_key: IdempotencyKey = None,
) -> BalanceUseOut:
    use = balances.decide_use(
        session,
        use_id,
        approve=body.approve,
        reason=body.reason,
        idempotency_key=idempotency_key,
        actor=access.actor,
        now=company_now(),
    )
    return BalanceUseOut.model_validate(use)


@router.post("/customers/{code}/statements/{start}/answer", response_model=StatementResponseOut)
def statement_answer(  # noqa: PLR0917 - the path's two parts, the body and the dependencies
    code: str,
    start: dt.date,
    body: StatementAnswerIn,
    access: Authorized,
    session: Db,
    store: Facts,
) -> StatementResponseOut:
    """The customer's own user signs off its statement for the periods from ``start``, or
    disputes it with a comment; the answer is pinned to the numbers it answered."""
    check_customer(session, access, code, f"customer {code}")
    answer = statement_service.respond(
        session,
        store,
        code,
        start,
        decision=StatementDecision(body.decision),
        comment=body.comment,
        actor=access.actor,
        now=company_now(),
    )
    return StatementResponseOut.model_validate(answer)


@router.get("/disputes", response_model=list[StatementResponseOut])
def disputes(access: Authorized, session: Db) -> list[StatementResponseOut]:
    """The statements whose customer's latest answer is a dispute nobody has answered yet, of
    the customers the caller may see, the oldest first."""
    found = statement_service.open_disputes(session, visible_customers(session, access))
    return [StatementResponseOut.model_validate(d) for d in found]


@router.post("/disputes/{response_id}/answer", response_model=DisputeAnswerOut)
def dispute_answer(
    response_id: Id, body: DisputeAnswerIn, access: Authorized, session: Db
) -> DisputeAnswerOut:
    """Answer a dispute: the numbers stand ("upheld") or a correction follows ("correcting"),
    with a comment the customer reads on its statement."""
    dispute = session.get(StatementResponse, response_id)
    if dispute is not None:  # another customer's dispute answers as a missing one
        check_customer(session, access, dispute.customer_code, f"dispute {response_id}")
    answer = statement_service.answer_dispute(
        session,
        response_id,
        outcome=DisputeOutcome(body.outcome),
        comment=body.comment,
        actor=access.actor,
        now=company_now(),
    )
    return DisputeAnswerOut.model_validate(answer)


@router.get(
    "/customers/{code}/statement",
    response_model=Statement,
    responses={404: {}, **NOT_MODIFIED},
)
def statement(
    code: str, request: Request, access: Authorized, session: Db, store: Facts
) -> Response:
    """What the customer earned per agreement and period, its settlements and its balance:
    the numbers the staff see, from the same runs."""
    check_customer(session, access, code, f"customer {code}")
    # The balance counts credits still valid today, so the body changes at midnight too.
    today = company_now().date()
    key = ("statement", code, today)
    return cached_json(request, session, key, lambda: _statement(session, store, code, today))


def _statement(session: Session, store: FactStore, code: str, day: dt.date) -> Statement:
    customer = customer_by_code(session, code)
    lines = [
        StatementLine(
            agreement_code=row.agreement_code,
            version=row.version,
            period_start=row.period_start,
            period_end=row.period_end,
            currency=row.currency,
            lines=row.lines,
            basis=row.basis,
            tier=row.tier,
            rate=row.rate,
            rebate=row.rebate,
            accrued=row.accrued,
        )
        for row in statement_rows(session, store, code)
    ]
    return Statement(
        customer=code,
        legal_name=customer.legal_name,
        lines=lines,
        settlements=[
            SettlementOut.model_validate(s) for s in list_settlements(session, beneficiary=code)
        ],
        balance=_balance_out(session, code, day),
    )


# ---- users and delegations --------------------------------------------------------------------


@router.get("/users", response_model=Page[UserOut])
def user_list(
    _access: Authorized,
    session: Db,
    offset: Offset = 0,
    limit: Limit = 100,
    active: Annotated[bool | None, Query()] = None,
) -> Page[UserOut]:
    """Users, by code."""
    query = select(User)
    if active is not None:
        query = query.where(User.active == active)
    return paged(session, query, User.code, offset, limit, shape=UserOut)


@router.post("/users", response_model=UserOut, status_code=201)
def user_create(body: UserIn, access: Authorized, session: Db) -> UserOut:
    user = create_user(
        session,
        body.code,
        name=body.name,
        roles=body.roles,
        approval_limit=body.approval_limit,
        customer_code=body.customer,
        actor=access.actor,
        now=company_now(),
    )
    return UserOut.model_validate(user)


@router.post("/users/{code}/disable", response_model=UserOut)
def user_disable(code: str, body: ReasonRequest, access: Authorized, session: Db) -> UserOut:
    user = disable_user(session, code, reason=body.reason, actor=access.actor, now=company_now())
    return UserOut.model_validate(user)


@router.post("/delegations", response_model=DelegationOut, status_code=201)
def delegation_create(body: DelegationIn, access: Authorized, session: Db) -> DelegationOut:
    grant = delegate(
        session,
        delegator=body.delegator,
        delegate_to=body.delegate,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        reason=body.reason,
        actor=access.actor,
        now=company_now(),
    )
    return DelegationOut.model_validate(grant)


# ---- the rest of the services -------------------------------------------------------------


@router.get(
    "/settlements/{settlement_id}/approvals", response_model=ApprovalStatusOut, responses={404: {}}
)
def settlement_approvals(settlement_id: Id, access: Authorized, session: Db) -> ApprovalStatusOut:
    """A settlement's approvals for its current inputs, and the steps still open."""
    visible_settlement(session, access, settlement_id)
    status = approval_status(session, settlement_id)
    return ApprovalStatusOut(
        settlement=SettlementOut.model_validate(status.settlement),
        approvals=[ApprovalOut.model_validate(a) for a in status.approvals],
        missing=status.missing,
    )


@router.post("/settlements/{settlement_id}/refresh", response_model=SettlementOut)
def settlement_refresh(
    settlement_id: Id, access: Authorized, session: Db, store: Facts
) -> SettlementOut:
    """Recompute a settlement whose inputs changed; it needs approving again."""
    done = settlements.refresh(session, store, settlement_id, actor=access.actor, now=company_now())
    return SettlementOut.model_validate(done)


@router.post("/agreements/{code}/termination", response_model=AgreementOut)
def agreement_terminate(
    code: str, body: TerminationIn, access: Authorized, session: Db
) -> AgreementOut:
    record = terminate(
        session, code, on=body.on, reason=body.reason, actor=access.actor, now=company_now()
    )
    return _agreement_out(session, record)


@router.post("/balance-expiries", response_model=ExpiryOut, status_code=201)
def balance_expiry(body: ExpiryIn, access: Authorized, session: Db) -> ExpiryOut:
    """Expire the rebate balance credits whose validity has ended, and release them."""
    done = balances.expire_credits(session, as_of=body.as_of, actor=access.actor, now=company_now())
    return ExpiryOut(credits=len(done), released=sum((c.amount for c in done), Decimal(0)))


@router.post("/customers/{code}/assignments", status_code=204)
def customer_assign(code: str, body: AssignmentIn, access: Authorized, session: Db) -> Response:
    assign(session, code, body.user, actor=access.actor, now=company_now())
    return Response(status_code=204)


@router.delete("/delegations/{delegation_id}", status_code=204)
def delegation_revoke(delegation_id: Id, access: Authorized, session: Db) -> Response:
    revoke_delegation(session, delegation_id, actor=access.actor, now=company_now())
    return Response(status_code=204)


@router.post("/users/{code}/password", status_code=204)
def user_password(code: str, body: PasswordIn, access: Authorized, session: Db) -> Response:
    """Set a password: your own, or anyone's as an administrator. Their sessions end."""
    set_password(session, code, body.password, actor=access.actor, now=company_now())
    return Response(status_code=204)


@router.post("/users/{code}/second-factor", response_model=SecondFactorOut, status_code=201)
def user_second_factor(code: str, access: Authorized, session: Db) -> SecondFactorOut:
    """A new TOTP secret (shown once): an administrator enrols a user, or a user renews theirs."""
    secret = enrol_second_factor(session, code, actor=access.actor, now=company_now())
    return SecondFactorOut(secret=secret, provisioning_uri=provisioning_uri(secret, code))
