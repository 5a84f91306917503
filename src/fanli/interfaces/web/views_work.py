"""The staff's working pages: imports, accrual runs, settlements (propose, pay, reject) and
agreements (an editor with live validation, drafts, submission). Each form posts the session's
CSRF token; every action is one service call, and a refusal is shown with its reasons.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import yaml
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as InPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.files import agreements_from_data, parse_terms_text
from fanli.agreements.models import AgreementRecord, AgreementVersion, VersionStatus
from fanli.agreements.queries import in_force, sent_back, settleable_codes
from fanli.agreements.service import add_version, discard_draft, edit_draft
from fanli.agreements.terms import Agreement
from fanli.compliance import review
from fanli.compliance.queries import policy_in_force
from fanli.config import company_now
from fanli.customers.models import BankAccount, Customer
from fanli.db.session import unit_of_work
from fanli.engine.explain import explain
from fanli.interfaces.api.deps import MAX_ID, Id, Offset
from fanli.interfaces.uploads import as_sent, upload_name
from fanli.kit.errors import FanliError, InputError, NotFoundError
from fanli.kit.progress import ProgressHook, Stage
from fanli.ledger import overview
from fanli.ledger.models import AccrualRun
from fanli.ledger.preview import preview_last_year
from fanli.ledger.queries import run_entries, run_result, run_results
from fanli.ledger.service import accrue, check_routine_day
from fanli.sales.files import InputFileError
from fanli.sales.mapping import load_mapping
from fanli.sales.models import BatchKind, ImportBatch
from fanli.sales.service import (
    import_customers,
    import_products,
    import_sales,
    issue_report,
    void_batch,
)
from fanli.settlements import balance as balances
from fanli.settlements import service as settlements
from fanli.settlements.models import DisputeOutcome, Settlement, StatementResponse
from fanli.settlements.queries import settled_results
from fanli.settlements.statements import answer_dispute, settlement_standings

from . import i18n
from .jobs import Outcome
from .views import (
    Viewer,
    _csrf_ok,
    _lang,
    _not_found,
    _page,
    _staff,
    _to_signin,
    act,
    flash_redirect,
    form_problem,
    may,
    readable,
    say,
    say_part,
    scope,
    templates,
    visible,
    workings,
)

router = APIRouter(include_in_schema=False)
SHOWN_ISSUES = 200  # rows of a refused file shown on the page; the download has them all
RESULTS_PAGE = 50  # result rows of an accrual run per page


def _checked(request: Request, csrf: str) -> tuple[Viewer | None, Response | None]:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return None, refused or _to_signin()
    if not _csrf_ok(viewer, csrf):
        lang = _lang(request)
        return None, HTMLResponse(lang._("This form has expired; reload the page."), 403)
    return viewer, None


# ---- long operations as jobs (jobs.py) ----------------------------------------------------------

# What the job page says of each stage (fanli.kit.progress.Stage); "" is a job not yet started.
STAGE_TEXT = {
    "": "Waiting for the job before it to end",
    Stage.READING: "Reading and checking the file",
    Stage.CHECKING: "Checking it against what is stored",
    Stage.WRITING: "Storing it",
    Stage.EXPIRING: "Ending the agreements whose term is over",
    Stage.PLANNING: "Choosing what to calculate again",
    Stage.RATING: "Calculating the rebates",
    Stage.POSTING: "Posting the journal",
    Stage.DETECTING: "Running the detectors",
}

Show = Callable[[Request, Viewer, Outcome], Response]


def start_job(
    request: Request,
    viewer: Viewer,
    *,
    title: str,
    title_values: dict[str, Any],
    work: Callable[[ProgressHook], Outcome],
    show: Show,
    cleanup: Callable[[], None] | None = None,
) -> RedirectResponse:
    """Hand ``work`` to a worker thread and go to the job's page. ``show`` renders the page
    the job was started from with the job's outcome, once it has ended."""
    job = request.app.state.jobs.start(
        owner=viewer.actor.code,
        title=title,
        title_values=title_values,
        back=request.url.path,
        work=work,
        cleanup=cleanup,
        show=show,
    )
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


@router.get("/jobs/{job_id}", response_model=None)
def job_page(job_id: str, request: Request) -> Response:
    """A job under way (a progress bar the page refreshes), or once ended, its outcome shown on
    the page it was started from. Only its owner sees it."""
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    job = request.app.state.jobs.find(job_id, viewer.actor.code)
    if job is None:
        return _not_found(request, viewer)
    if job.finished:
        outcome = dict(job.outcome)
        if outcome.pop("error_unexpected", False):
            outcome["error"] = _lang(request)._(
                "The job failed unexpectedly, and nothing was stored. The server log says why."
            )
        if "refusal" in outcome:
            outcome["error"] = say(_lang(request), outcome.pop("refusal"))
        if outcome.pop("error_stopped", False):
            outcome["error"] = _lang(request)._(
                "The server stopped before the job began; nothing was stored."
            )
        show: Show = job.show
        return show(request, viewer, outcome)
    return _page(request, "job.html", viewer, current_job=job, stage=STAGE_TEXT[job.tracker.stage])


# ---- imports ---------------------------------------------------------------------------------


def _batches(request: Request) -> list[ImportBatch]:
    with unit_of_work(request.app.state.read_sessions) as session:
        return list(session.scalars(select(ImportBatch).order_by(ImportBatch.id.desc()).limit(50)))


@router.get("/imports", response_model=None)
def imports(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    return _page(request, "imports.html", viewer, batches=_batches(request), kinds=list(BatchKind))


def _imports_page(request: Request, viewer: Viewer, outcome: Outcome) -> Response:
    return _page(
        request, "imports.html", viewer, batches=_batches(request), kinds=list(BatchKind), **outcome
    )


def _problems_report(lang: i18n.Lang, refused: InputFileError, *, excel: bool) -> bytes:
    """A refused file's problems to download, in the reader's language (the API's report is
    the same, in English)."""
    return issue_report(
        refused,
        excel=excel,
        labels=(lang._("File"), lang._("Row"), lang._("Field"), lang._("Problem")),
        reason=lambda issue: (
            say_part(lang, issue.said) if issue.said is not None else issue.message
        ),
        more=lambda count: lang.n_(
            "{count} more problem is not listed: correct these and import the file again to "
            "see it.",
            "{count} more problems are not listed: correct these and import the file again to "
            "see them.",
            count,
        ),
    )


@router.post("/imports", response_model=None)
def upload(
    request: Request,
    kind: Annotated[BatchKind, Form()],
    file: Annotated[UploadFile, File()],
    mapping: str = Form(default="", max_length=20_000),
    csrf: str = Form(default=""),
) -> Response:
    """Start the import as a job; its page shows the progress, then the batch or the problems."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    importer = {
        BatchKind.CUSTOMERS: import_customers,
        BatchKind.PRODUCTS: import_products,
        BatchKind.SALES: import_sales,
    }[kind]
    name = upload_name(file.filename)
    # The file outlives the request: the job reads it, then removes the folder.
    folder = Path(tempfile.mkdtemp(prefix="fanli-web-upload-"))
    path = folder / name
    with path.open("wb") as saved:
        shutil.copyfileobj(file.file, saved)
    sessions, facts, actor = request.app.state.sessions, request.app.state.facts, viewer.actor
    lang = _lang(request)

    def work(progress: ProgressHook) -> Outcome:
        # The form keeps the kind chosen and the mapping typed, whatever happens.
        outcome: Outcome = {"chosen_kind": kind.value, "mapping": mapping}
        try:
            columns = None
            if mapping.strip():  # the same YAML as the command line's --mapping file
                mapping_file = folder / "mapping.yaml"
                mapping_file.write_text(mapping, "utf-8")
                columns = load_mapping(mapping_file)
            with unit_of_work(sessions) as session:
                outcome["outcome"] = importer(
                    session,
                    facts,
                    path,
                    actor=actor,
                    now=company_now(),
                    mapping=columns,
                    progress=progress,
                )
        except InputFileError as bad:
            refused = as_sent(bad, path, name)
            outcome.update(
                issues=refused.issues[:SHOWN_ISSUES],
                total_issues=refused.total,
                listed_issues=len(refused.issues),
                reports={
                    excel: base64.b64encode(_problems_report(lang, refused, excel=excel)).decode()
                    for excel in (False, True)
                },
                name=refused.file,
            )
        except InputError as error:
            # Name the user's file or the mapping, never the server's temporary folder.
            in_mapping = bool(error.file and error.file.endswith("mapping.yaml"))
            outcome["error"] = (
                ", ".join(
                    part
                    for part in (
                        lang._("mapping") if in_mapping else as_sent(error, path, name).file,
                        lang._("row {row}", row=error.row) if error.row is not None else "",
                        lang._("field {field}", field=error.field) if error.field else "",
                    )
                    if part
                )
                + lang._(": ")
                + (say(lang, error, alone=False) if error.template else error.detail)
            )
        return outcome

    return start_job(
        request,
        viewer,
        title="Importing {name}",
        title_values={"name": name},
        work=work,
        show=_imports_page,
        cleanup=lambda: shutil.rmtree(folder, ignore_errors=True),
    )


@router.post("/imports/{batch_id}/void", response_model=None)
def void(
    batch_id: Id,
    request: Request,
    reason: str = Form(default="", max_length=500),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    context: dict[str, Any] = {}
    try:
        with unit_of_work(request.app.state.sessions) as session:
            left = void_batch(
                session,
                request.app.state.facts,
                batch_id,
                reason=reason,
                actor=viewer.actor,
                now=company_now(),
            ).returns_left
        lang = _lang(request)
        context["voided"] = lang._(
            "Batch {batch} voided: its lines stop counting from the next accrual run.",
            batch=batch_id,
        )
        if left:
            context["returns_left"] = lang.n_(
                "{count} return in another batch names a line of this batch ({lines}): it keeps "
                "reducing rebates until that sale is imported again or the return is voided too.",
                "{count} returns in other batches name lines of this batch ({lines}): they keep "
                "reducing rebates until those sales are imported again or the returns are voided "
                "too.",
                len(left),
                lines=", ".join(f"{r.line_id} ({r.batch_id})" for r in left[:20])
                + (" …" if len(left) > 20 else ""),
            )
    except FanliError as error:
        context["error"] = say(_lang(request), error)
    return _page(
        request, "imports.html", viewer, batches=_batches(request), kinds=list(BatchKind), **context
    )


# ---- accrual runs ----------------------------------------------------------------------------


def _runs(request: Request) -> list[AccrualRun]:
    with unit_of_work(request.app.state.read_sessions) as session:
        return list(session.scalars(select(AccrualRun).order_by(AccrualRun.id.desc()).limit(20)))


@router.get("/accruals", response_model=None)
def accruals(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    return _accruals_page(request, viewer, {})


def _accruals_page(request: Request, viewer: Viewer, outcome: Outcome) -> Response:
    return _page(
        request,
        "accruals.html",
        viewer,
        runs=_runs(request),
        today=_lang(request).today(),
        **outcome,
    )


@router.post("/accruals", response_model=None)
def run_accrual(
    request: Request, as_of: Annotated[dt.date, Form()], csrf: str = Form(default="")
) -> Response:
    """Start the accrual run as a job; its page shows the progress, then the run."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:  # the routine run's day, refused at once, before any job
        with unit_of_work(request.app.state.read_sessions) as session:
            check_routine_day(session, as_of, today=_lang(request).today())
    except FanliError as error:
        # The day typed stays in the field, beside the reason it was refused.
        outcome = {"error": say(_lang(request), error), "as_of": as_of}
        return _accruals_page(request, viewer, outcome)
    sessions, facts, actor = request.app.state.sessions, request.app.state.facts, viewer.actor

    def work(progress: ProgressHook) -> Outcome:
        with unit_of_work(sessions) as session:
            summary = accrue(  # the day checked again, under the run's lock
                session,
                facts,
                as_of=as_of,
                actor=actor,
                now=company_now(),
                progress=progress,
                routine=True,
            )
        return {"summary": summary}

    return start_job(
        request,
        viewer,
        title="Accrual run as of {date}",
        title_values={"date": as_of},
        work=work,
        show=_accruals_page,
    )


@router.get("/accruals/{run_id}", response_model=None)
def accrual_run(run_id: Id, request: Request, q: str = "", offset: Offset = 0) -> Response:
    """What a run read and what it rated: every result row, searchable, each with the engine's
    explanation (loaded when opened)."""
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    offset = max(offset, 0)
    with unit_of_work(request.app.state.read_sessions) as session:
        run = session.get(AccrualRun, run_id)
        if run is None:
            return _not_found(request, viewer)
        shown = visible(session, viewer, "GET /api/accrual-runs")
        found = run_results(
            session, request.app.state.facts, run_id, customers=shown, search=q, offset=offset
        )
        in_units = overview.bases_in_units(session)
        entries = run_entries(session, run_id)
    return _page(
        request,
        "accrual_run.html",
        viewer,
        run=run,
        entries=entries,
        results=found,
        q=q,
        offset=offset,
        page=RESULTS_PAGE,
        one_day=dt.timedelta(days=1),  # a period's end is exclusive
        in_units=in_units,
    )


@router.get("/accruals/{run_id}/explain", response_class=HTMLResponse)
def explain_result(  # noqa: PLR0917 - the result's key
    run_id: Id,
    request: Request,
    agreement: str = Query(max_length=64),
    version: int = Query(ge=1, le=MAX_ID),
    customer: str = Query(max_length=64),
    period: int = Query(ge=1, le=MAX_ID),
) -> HTMLResponse:
    """The engine's explanation of one result row of a run (HTMX, when the row is opened)."""
    viewer, refused = _staff(request)
    if refused or viewer is None:  # PAGES: as GET /api/accrual-runs
        return HTMLResponse("", status_code=404)
    with unit_of_work(request.app.state.read_sessions) as session:
        shown = visible(session, viewer, "GET /api/accrual-runs")
        allowed = shown is None or customer in shown
        key = (agreement, version, customer, period)
        return _explanation(request, session, run_id, key if allowed else None)


def _explanation(
    request: Request, session: Session, run_id: int, key: tuple[str, int, str, int] | None
) -> HTMLResponse:
    """The engine's explanation of the result ``key`` (agreement code, version number,
    customer, period index) of run ``run_id``, as an HTMX fragment; None: not the viewer's."""
    lang = _lang(request)
    found = run_result(session, request.app.state.facts, run_id, key) if key else None
    terms = (
        session.scalar(
            select(AgreementVersion.terms)
            .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
            .where(AgreementRecord.code == key[0], AgreementVersion.version == key[1])
        )
        if key
        else None
    )
    if found is None or terms is None:
        return HTMLResponse(f'<p class="text-danger">{lang._("No such result.")}</p>', 404)
    row, previous = found
    text = explain(
        Agreement.model_validate(terms),
        row,
        None,
        previous=previous,
        language="zh" if lang.code == "zh_CN" else "en",
    )
    return HTMLResponse(
        '<pre class="small mb-0" data-testid="explanation" style="white-space: pre-wrap">'
        f"{_escape(text)}</pre>"
    )


@router.get("/settlements/{settlement_id}/workings/{line}", response_class=HTMLResponse)
def settlement_workings(
    settlement_id: Id, line: Annotated[int, InPath(ge=0, le=MAX_ID)], request: Request
) -> HTMLResponse:
    """How a settlement's amount was worked out (HTMX): the engine's explanation of the result
    its ``line``-th version line settles, in the run it was taken from. Open to whoever may
    see the settlement, so an approver reads the calculation of the amount to approve."""
    viewer, refused = _staff(request)
    if refused or viewer is None:  # PAGES: as GET /api/settlements/{settlement_id}
        return HTMLResponse("", status_code=404)
    with unit_of_work(request.app.state.read_sessions) as session:
        settlement = session.get(Settlement, settlement_id)
        shown = visible(session, viewer, "GET /api/settlements/{settlement_id}")
        results = []
        if settlement is not None and (shown is None or settlement.beneficiary in shown):
            results = settled_results(session, [settlement])[settlement.id]
        if not 0 <= line < len(results):
            return _explanation(request, session, 0, None)
        found = results[line]
        key = (found.agreement_code, found.version, found.beneficiary, found.period_index)
        return _explanation(request, session, found.run_id, key)


# ---- settlements -----------------------------------------------------------------------------


def _settlement_page(request: Request, viewer: Viewer, **context: Any) -> HTMLResponse:
    with unit_of_work(request.app.state.read_sessions) as session:
        query = select(Settlement).order_by(Settlement.id.desc()).limit(50)
        shown = visible(session, viewer, "GET /api/settlements")
        if shown is not None:
            query = query.where(Settlement.beneficiary.in_(shown))
        rows = list(session.scalars(query))
        # Only agreements that have been in force have results to settle.
        codes = settleable_codes(session)
        # Open settlements of a period whose statement the customer disputes, or whose
        # correction is still to come, carry a mark: approving or paying them pays contested
        # numbers.
        standing = settlement_standings(session, request.app.state.facts, rows)
        # A later run changed what is due: the amount shown is not what would be approved.
        outdated = settlements.outdated(session, request.app.state.facts, rows)
        # How each amount was worked out, for whoever may read it before deciding.
        worked = (
            workings(session, rows)
            if may(viewer, "/settlements/{settlement_id}/workings/{line}")
            else {}
        )
        # A transfer goes only to a verified account of the beneficiary: offer just those, to
        # those who may see bank accounts.
        sees_accounts = scope(viewer, "GET /api/customers/{code}/bank-accounts") is not None
        payees = {
            s.beneficiary
            for s in rows
            if settlements.payout_form(s) == "bank_transfer" and sees_accounts
        }
        accounts: dict[str, list[BankAccount]] = {}
        for account, code in session.execute(
            select(BankAccount, Customer.code)
            .join(Customer, Customer.id == BankAccount.customer_id)
            .where(Customer.code.in_(payees), BankAccount.verified_at.is_not(None))
            .order_by(BankAccount.id)
        ).all():
            accounts.setdefault(code, []).append(account)
    return _page(
        request,
        "settlements.html",
        viewer,
        rows=rows,
        workings=worked,
        # How each would be paid: a claw-back is collected by document or offset, never by a
        # transfer or from the balance (the service decides; the form asks for what it needs).
        paid_as={s.id: settlements.payout_form(s).value for s in rows},
        accounts=accounts,
        standing=standing,
        outdated=outdated,
        agreements=codes,
        key=secrets.token_urlsafe(12),
        **context,
    )


@router.get("/settlements", response_model=None)
def settlement_list(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    return _settlement_page(request, viewer)


@router.post("/settlements", response_model=None)
def propose(  # noqa: PLR0917 - one form field each
    request: Request,
    period_start: Annotated[dt.date, Form()],
    agreement: str = Form(max_length=64),
    customer: str = Form(max_length=64),
    key: str = Form(max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            shown = visible(session, viewer, "POST /api/settlements")
            if shown is not None and customer not in shown:
                raise NotFoundError(f"there is no customer {customer}")
            made = settlements.propose(
                session,
                request.app.state.facts,
                agreement_code=agreement,
                beneficiary=customer,
                period_start=period_start,
                idempotency_key=f"web-{key}",
                actor=viewer.actor,
                now=company_now(),
            )
            done = _lang(request)._("Settlement {id} proposed.", id=made.id)
    except FanliError as error:
        # The proposal form keeps what was typed, beside the reason it was refused.
        kept = {"agreement": agreement, "customer": customer, "period_start": str(period_start)}
        return flash_redirect("/settlements", error=say(_lang(request), error), kept=kept)
    return flash_redirect("/settlements", done=done)


@router.post("/settlements/{settlement_id}/pay", response_model=None)
def pay(  # noqa: PLR0917 - one form field each
    settlement_id: Id,
    request: Request,
    document_number: str = Form(default="", max_length=64),
    bank_account: int | None = Form(default=None, ge=1, le=MAX_ID),
    original_lines: str = Form(default="", max_length=5000),
    key: str = Form(max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            payout = settlements.pay(
                session,
                request.app.state.facts,
                settlement_id,
                document_number=document_number or None,
                bank_account_id=bank_account,
                # A red invoice names the customer's original invoice lines it reverses.
                original_invoices=[
                    line.strip() for line in re.split(r"[,，\s]+", original_lines) if line.strip()
                ]
                or None,
                idempotency_key=f"web-{key}",
                actor=viewer.actor,
                now=company_now(),
            )
            done = _lang(request)._("Settlement {id} paid.", id=payout.settlement_id)
    except FanliError as error:
        return flash_redirect("/settlements", error=say(_lang(request), error))
    return flash_redirect("/settlements", done=done)


@router.post("/settlements/{settlement_id}/reject", response_model=None)
def reject(
    settlement_id: Id,
    request: Request,
    reason: str = Form(max_length=500),
    back: Literal["/settlements", "/inbox"] = Form(default="/settlements"),
    csrf: str = Form(default=""),
) -> Response:
    """Reject a proposed settlement with a reason, from the settlements page or from the
    approver's inbox (``back``: the page to return to)."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            settlements.reject(
                session, settlement_id, reason=reason, actor=viewer.actor, now=company_now()
            )
            done = _lang(request)._("Settlement {id} rejected.", id=settlement_id)
    except FanliError as error:
        return flash_redirect(back, error=say(_lang(request), error))
    return flash_redirect(back, done=done)


@router.post("/settlements/{settlement_id}/refresh", response_model=None)
def refresh(settlement_id: Id, request: Request, csrf: str = Form(default="")) -> Response:
    """Recompute an open settlement whose inputs changed since it was proposed (a later run):
    it goes back to proposed and its approvals lapse, so approvers see the new amount."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            done = settlements.refresh(
                session, request.app.state.facts, settlement_id, actor=viewer.actor,
                now=company_now(),
            )  # fmt: skip
            message = _lang(request)._(
                "Settlement {id} refreshed: now {amount}.",
                id=settlement_id,
                amount=_lang(request).money(done.amount, done.currency),
            )
    except FanliError as error:
        return flash_redirect("/settlements", error=say(_lang(request), error))
    return flash_redirect("/settlements", done=message)


# ---- rebate balance uses ---------------------------------------------------------------------


@router.post("/customers/{code}/balance-uses", response_model=None)
def balance_use(  # noqa: PLR0917 - one form field each
    code: str,
    request: Request,
    amount: Annotated[Decimal, Form(gt=0, max_digits=16, decimal_places=2)],
    order_reference: Annotated[str, Form(min_length=1, max_length=64)],
    key: str = Form(max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    """Ask to spend part of a customer's rebate balance on an order (another user decides)."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    lang = _lang(request)
    try:
        with unit_of_work(request.app.state.sessions) as session:
            # As over the API: a sales user only for the customers assigned to them.
            shown = visible(session, viewer, "POST /api/balance-uses")
            if shown is not None and code not in shown:
                return _not_found(request, viewer)
            use = balances.request_use(
                session,
                code,
                amount=amount,
                order_reference=order_reference,
                idempotency_key=f"web-{key}",
                actor=viewer.actor,
                now=company_now(),
            )
            message = lang._(
                "Use {id} of {amount} requested.", id=use.id, amount=lang.money(amount)
            )
        return flash_redirect(f"/customers/{quote(code)}", done=message)
    except FanliError as error:
        return flash_redirect(f"/customers/{quote(code)}", error=say(_lang(request), error))


@router.post("/inbox/uses/{use_id}", response_model=None)
def decide(  # noqa: PLR0917 - one form field each
    use_id: Id,
    request: Request,
    decision: Annotated[str, Form(pattern="^(approve|reject)$")],
    reason: str = Form(default="", max_length=500),
    key: str = Form(max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return act(
        request,
        "/inbox",
        lambda session: balances.decide_use(
            session,
            use_id,
            approve=decision == "approve",
            reason=reason,
            idempotency_key=f"web-{key}",
            actor=viewer.actor,
            now=company_now(),
        ),
        _lang(request)._("Use {id} decided.", id=use_id),
    )


@router.post("/inbox/disputes/{response_id}", response_model=None)
def answer_a_dispute(
    response_id: Id,
    request: Request,
    outcome: Annotated[DisputeOutcome, Form()],
    comment: str = Form(default="", max_length=2000),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()

    def step(session: Session) -> None:
        dispute = session.get(StatementResponse, response_id)
        shown = visible(session, viewer, "POST /api/disputes/{response_id}/answer")
        if dispute is not None and shown is not None and dispute.customer_code not in shown:
            dispute = None  # another salesperson's customer: as if there were none
        if dispute is None:
            raise NotFoundError.said("there is no dispute {dispute}", dispute=response_id)
        answer_dispute(
            session,
            response_id,
            outcome=outcome,
            comment=comment,
            actor=viewer.actor,
            now=company_now(),
        )

    return act(request, "/inbox", step, _lang(request)._("Dispute answered."))


# ---- agreements ------------------------------------------------------------------------------


def _problems(text: str, lang: i18n.Lang) -> tuple[list[str], Any]:
    """What is wrong with terms written as YAML or JSON: each problem a readable line, in the
    reader's language."""
    try:
        # Fanli's loader: 2.5 is the decimal 2.5, as in a terms file (YAML's own reads a float).
        data = parse_terms_text(text, source="editor")
    except InputError as error:  # where the text stops being YAML or JSON, and why
        return [say(lang, error, alone=False)], None
    if not isinstance(data, dict):
        return [lang._("the terms are a mapping: id, term, rebate, ...")], None
    try:
        parsed = agreements_from_data(data, source="editor")
    except InputError as error:  # the editor is the file: say only where in the terms
        if isinstance(error.__cause__, ValidationError):
            return [form_problem(lang, e) for e in error.__cause__.errors()], None
        if error.template is not None:
            return [say(lang, error, alone=False)], None
        return [str(error).removeprefix(f"file {error.file}: ")], None
    except FanliError as error:
        return [say(lang, error, alone=False)], None
    if len(parsed) != 1:
        return [lang._("write one agreement at a time")], None
    return [], parsed[0]


def _agreement_page(request: Request, viewer: Viewer, **context: Any) -> HTMLResponse:
    with unit_of_work(request.app.state.read_sessions) as session:
        rows = list(
            session.execute(
                select(AgreementRecord.code, AgreementRecord.name, AgreementVersion)
                .join(AgreementVersion, AgreementVersion.agreement_id == AgreementRecord.id)
                # Discarded drafts are given up: the API and the audit trail still show them.
                .where(AgreementVersion.status != VersionStatus.DISCARDED)
                .order_by(AgreementRecord.code, AgreementVersion.version)
            )
        )
        # A draft that was submitted before was sent back: its drafter needs to know why.
        returned = sent_back(
            session, [v.id for _c, _n, v in rows if v.status == "draft" and v.submission > 0]
        )
    return _page(request, "agreements.html", viewer, rows=rows, returned=returned, **context)


@router.get("/agreements", response_model=None)
def agreements(
    request: Request, edit: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> Response:
    """The agreements; ``?edit=<version id>`` opens a draft's terms in the editor."""
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    text = ""
    if edit is not None:
        with unit_of_work(request.app.state.read_sessions) as session:
            draft = session.get(AgreementVersion, edit)
            if draft is None:
                return _not_found(request, viewer)
            if draft.status != VersionStatus.DRAFT:  # submitted, discarded or active since
                lang = _lang(request)
                return _agreement_page(
                    request,
                    viewer,
                    text="",
                    error=lang._(
                        "Version {version} of {code} is {status} now: it is no longer a draft "
                        "to edit.",
                        version=draft.version,
                        code=draft.terms["id"],
                        status=lang._(draft.status),
                    ),
                )
            text = yaml.safe_dump(readable(draft.terms), allow_unicode=True, sort_keys=False)
    return _agreement_page(request, viewer, text=text)


@router.post("/agreements/check", response_class=HTMLResponse)
def check(request: Request, terms: str = Form(default="", max_length=200_000)) -> HTMLResponse:
    """Live validation for the editor (HTMX): the problems, or that the terms are valid."""
    viewer, refused = _staff(request)
    lang = _lang(request)
    if refused or viewer is None:
        return HTMLResponse("", status_code=403)
    problems, parsed = _problems(terms, lang)
    if not problems:
        valid = f'<div class="text-success">{lang._("The terms are valid.")}</div>'
        # What submitting would still refuse under the policy in force (a contract, a form
        # the policy allows, a justification for a rate beyond it): said now, not at submit.
        with unit_of_work(request.app.state.read_sessions) as session:
            try:
                _version, policy = policy_in_force(session, lang.today())
            except FanliError:
                return HTMLResponse(valid)
            reasons, _deviations = review.check_terms(session, parsed, policy, justification=None)
        if not reasons:
            return HTMLResponse(valid)
        items = "".join(f"<li>{_escape(say_part(lang, r))}</li>" for r in reasons)
        before = lang._("Before it can be submitted:")
        return HTMLResponse(
            f'{valid}<div class="text-warning-emphasis small mt-1" data-testid="to-submit">'
            f'{before}<ul class="mb-0">{items}</ul></div>'
        )
    items = "".join(f"<li>{_escape(p)}</li>" for p in problems)
    return HTMLResponse(f'<ul class="text-danger mb-0" data-testid="problems">{items}</ul>')


@router.post("/agreements/preview", response_class=HTMLResponse)
def preview(request: Request, terms: str = Form(default="", max_length=200_000)) -> HTMLResponse:
    """What the terms in the editor would have paid on last year's sales, beside the version in
    force when they change an active agreement (HTMX; nothing stored)."""
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return HTMLResponse("", status_code=403)
    problems, parsed = _problems(terms, _lang(request))
    if problems:
        items = "".join(f"<li>{_escape(p)}</li>" for p in problems)
        return HTMLResponse(f'<ul class="text-danger mb-0">{items}</ul>')
    try:
        with unit_of_work(request.app.state.read_sessions) as session:
            # A new version of an active agreement: beside the version in force.
            found = preview_last_year(
                session, request.app.state.facts, parsed, in_force=in_force(session, parsed.id)
            )
    except FanliError as error:
        return HTMLResponse(f'<div class="text-danger">{_escape(say(_lang(request), error))}</div>')
    return templates.TemplateResponse(
        request,
        "_preview.html",
        {
            "lang": _lang(request),
            "_": _lang(request)._,
            "n_": _lang(request).n_,
            "preview": found,
            "terms": parsed,
            "one_day": dt.timedelta(days=1),  # the preview's year ends exclusive
        },
    )


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


@router.post("/agreements", response_model=None)
def save(
    request: Request,
    terms: str = Form(max_length=200_000),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    problems, parsed = _problems(terms, _lang(request))
    if problems:
        return _agreement_page(request, viewer, text=terms, problems=problems)
    try:
        with unit_of_work(request.app.state.sessions) as session:
            # An agreement with a draft takes the new terms into that draft (a draft refused by
            # the compliance check is corrected so); any other gets a new draft version.
            draft = session.scalar(
                select(AgreementVersion.id)
                .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
                .where(AgreementRecord.code == parsed.id, AgreementVersion.status == "draft")
            )
            lang = _lang(request)
            if draft is not None:
                version = edit_draft(session, draft, parsed, actor=viewer.actor, now=company_now())
                done = lang._(
                    "Draft {code} v{version} updated.", code=parsed.id, version=version.version
                )
            else:
                version = add_version(session, parsed, actor=viewer.actor, now=company_now())
                done = lang._(
                    "Draft {code} v{version} saved.", code=parsed.id, version=version.version
                )
    except FanliError as error:
        return _agreement_page(
            request, viewer, text=terms, problems=[say(_lang(request), error, alone=False)]
        )
    return _agreement_page(request, viewer, text="", done=done)


@router.post("/agreements/{version_id}/discard", response_model=None)
def discard(
    version_id: Id,
    request: Request,
    reason: str = Form(default="", max_length=500),
    csrf: str = Form(default=""),
) -> Response:
    """Give up a draft: it leaves the list, and stays on record as discarded."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    lang = _lang(request)
    try:
        with unit_of_work(request.app.state.sessions) as session:
            version = discard_draft(
                session, version_id, reason=reason, actor=viewer.actor, now=company_now()
            )
            done = lang._(
                "Draft {code} v{version} discarded.",
                code=version.terms["id"],
                version=version.version,
            )
    except FanliError as error:
        return flash_redirect("/agreements", error=say(lang, error))
    return flash_redirect("/agreements", done=done)


@router.post("/agreements/{version_id}/submit", response_model=None)
def submit(
    version_id: Id,
    request: Request,
    justification: str = Form(default="", max_length=1000),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            review.submit(
                session,
                version_id,
                justification=justification or None,
                actor=viewer.actor,
                now=company_now(),
            )
    except FanliError as error:  # said at the top, where the button was pressed
        return _agreement_page(request, viewer, text="", error=say(_lang(request), error))
    return flash_redirect(
        "/agreements", done=_lang(request)._("Version submitted: it waits for its approvals.")
    )
