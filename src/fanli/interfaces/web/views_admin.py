"""The pages of oversight and administration:
- the audit: the trail's verification, checkpoints, findings and their workflow;
- the policy, current and past;
- accounting periods: close, GL export;
- agreement approval, with a readable diff between versions;
- users: create and disable, and the caller's own API tokens and second factor.
"""

from __future__ import annotations

import difflib
import secrets
import tempfile
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.agreements.models import AgreementRecord, AgreementVersion, VersionStatus
from fanli.agreements.service import approvals_of, missing_approvals
from fanli.audit.models import AuditCheckpoint
from fanli.audit.trail import verify
from fanli.compliance import review
from fanli.compliance.queries import policy_versions
from fanli.config import company_now
from fanli.db.session import unit_of_work
from fanli.interfaces.api.deps import Id
from fanli.kit.errors import FanliError, Month
from fanli.kit.progress import ProgressHook
from fanli.ledger.export import export_gl
from fanli.ledger.periods import close_period
from fanli.ledger.queries import accounting_periods
from fanli.oversight.audits import (
    OWNERS,
    Filters,
    assign_finding,
    dismiss_finding,
    report,
    resolve_finding,
    run_audit,
)
from fanli.oversight.models import FindingStatus
from fanli.users.actor import Role
from fanli.users.auth import (
    create_token,
    enrol_second_factor,
    new_second_factor_secret,
    provisioning_uri,
    revoke_token,
    set_password,
)
from fanli.users.models import ApiToken, User
from fanli.users.service import create_user, disable_user

from . import plain
from .jobs import Outcome
from .views import (
    Viewer,
    _lang,
    _not_found,
    _page,
    _staff,
    _to_signin,
    act,
    change_own_password,
    flash_redirect,
    readable,
    say,
    scope,
)
from .views_work import _checked, start_job

router = APIRouter(include_in_schema=False)


# ---- the audit --------------------------------------------------------------------------------


@router.get("/audit", response_model=None)
def audit(request: Request, status: str = "") -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    return _audit_page(request, viewer, {}, status=status)


def _audit_page(
    request: Request, viewer: Viewer, outcome: Outcome, *, status: str = ""
) -> Response:
    with unit_of_work(request.app.state.read_sessions) as session:
        trail = verify(session)
        checkpoints = list(
            session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(10))
        )
        chosen = status if status in {s.value for s in FindingStatus} else None
        findings = report(session, Filters(status=chosen))
        # Those who could resolve a finding they are given (the service refuses anyone else).
        people = [
            code
            for code, roles in session.execute(
                select(User.code, User.roles).where(User.active).order_by(User.code)
            ).all()
            if OWNERS & {Role(role) for role in roles}
        ]
    return _page(
        request,
        "audit.html",
        viewer,
        trail=trail,
        checkpoints=checkpoints,
        findings=findings,
        chosen=status,
        statuses=[s.value for s in FindingStatus],
        people=people,
        may_run=scope(viewer, "POST /api/audit/runs") is not None,
        this_month=company_now().strftime("%Y-%m"),
        **outcome,
    )


@router.post("/audit/runs", response_model=None)
def audit_run(
    request: Request, period: str = Form(pattern=r"^\d{4}-\d{2}$"), csrf: str = Form(default="")
) -> Response:
    """Run the detectors over a period as a job (internal auditors, as over the API)."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    lang = _lang(request)
    sessions, facts, actor = request.app.state.sessions, request.app.state.facts, viewer.actor

    def work(progress: ProgressHook) -> Outcome:
        with unit_of_work(sessions) as session:
            run = run_audit(
                session, facts, period, actor=actor, now=company_now(), progress=progress
            )
            return {
                "done": lang._(
                    "Audit of {period}: {found} findings, {opened} new.",
                    period=lang.month(run.period),
                    found=run.found,
                    opened=run.opened,
                )
            }

    return start_job(
        request,
        viewer,
        title="Audit of {period}",
        title_values={"period": Month(period)},
        work=work,
        show=_audit_page,
    )


@router.post("/audit/findings/{finding_id}", response_model=None)
def finding_action(  # noqa: PLR0917 - one form field each
    finding_id: Id,
    request: Request,
    action: Annotated[str, Form(pattern="^(assign|resolve|dismiss)$")],
    owner: str = Form(default="", max_length=64),
    reason: str = Form(default="", max_length=1000),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()

    def step(session: Session) -> object:
        now = company_now()
        if action == "assign":
            return assign_finding(session, finding_id, owner, actor=viewer.actor, now=now)
        if action == "resolve":
            return resolve_finding(session, finding_id, reason=reason, actor=viewer.actor, now=now)
        return dismiss_finding(session, finding_id, reason=reason, actor=viewer.actor, now=now)

    return act(request, "/audit", step, _lang(request)._("Finding {id} updated.", id=finding_id))


# ---- the policy -------------------------------------------------------------------------------


@router.get("/policy", response_model=None)
def policy(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        versions = [
            # Without the empty defaults (nulls, empty lists): what the policy says, no more.
            (v, yaml.safe_dump(readable(v.document), allow_unicode=True, sort_keys=False))
            for v in reversed(policy_versions(session))
        ]
    return _page(request, "policy.html", viewer, versions=versions)


# ---- accounting periods -----------------------------------------------------------------------


@router.get("/periods", response_model=None)
def periods(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        rows = list(accounting_periods(session))
    return _page(request, "periods.html", viewer, rows=rows)


@router.post("/periods/{code}/close", response_model=None)
def close(code: str, request: Request, csrf: str = Form(default="")) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return act(
        request,
        "/periods",
        lambda session: close_period(session, code, actor=viewer.actor, now=company_now()),
        _lang(request)._("Period {code} closed.", code=_lang(request).month(code)),
    )


@router.post("/periods/{code}/gl", response_model=None)
def gl(code: str, request: Request, csrf: str = Form(default="")) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    with tempfile.TemporaryDirectory(prefix="fanli-web-gl-") as folder:
        out = Path(folder) / f"gl-{code}.xlsx"
        try:
            with unit_of_work(request.app.state.sessions) as session:
                export_gl(
                    session,
                    request.app.state.facts,
                    code,
                    out,
                    actor=viewer.actor,
                    now=company_now(),
                )
        except FanliError as error:
            return flash_redirect("/periods", error=say(_lang(request), error))
        body = out.read_bytes()
    return Response(
        body,
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="gl-{code}.xlsx"'},
    )


# ---- agreement review -------------------------------------------------------------------------


@router.get("/agreements/{code}/review", response_model=None)
def agreement_review(code: str, request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        versions = list(
            session.scalars(
                select(AgreementVersion)
                .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
                .where(AgreementRecord.code == code)
                .order_by(AgreementVersion.version)
            )
        )
    if not versions:
        return _not_found(request, viewer)
    lang = _lang(request)
    diffs: list[tuple[AgreementVersion, list[str], list[tuple[str, str]]]] = []
    previous = ""
    for version in versions:
        text = yaml.safe_dump(readable(version.terms), allow_unicode=True, sort_keys=True)
        if not previous:  # the first version: its terms as written, nothing to compare
            lines = [(" ", line) for line in text.splitlines()]
        else:  # what changed, with two lines around each change; "…" where lines are skipped
            changed = difflib.unified_diff(
                previous.splitlines(), text.splitlines(), lineterm="", n=2
            )
            lines = [
                ("…", "") if line.startswith("@@") else (line[:1], line[1:])
                for line in list(changed)[2:]  # without the file headers
            ]
        diffs.append((version, plain.describe(version.terms, lang), lines))
        previous = text
    return _page(
        request,
        "agreement_review.html",
        viewer,
        code=code,
        diffs=list(reversed(diffs)),
        submitted=VersionStatus.SUBMITTED.value,
    )


@router.post("/agreements/{code}/review/{version_id}", response_model=None)
def approve_version(
    code: str,
    version_id: Id,
    request: Request,
    terms_hash: str = Form(max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    path = f"/agreements/{code}/review"
    try:
        with unit_of_work(request.app.state.sessions) as session:
            version = review.approve(
                session, version_id, terms_hash=terms_hash, actor=viewer.actor, now=company_now()
            )
            status = version.status
            waiting = (
                missing_approvals(version, approvals_of(session, version))
                if status == VersionStatus.SUBMITTED
                else []
            )
    except FanliError as error:
        return flash_redirect(path, error=say(_lang(request), error))
    lang = _lang(request)
    if waiting:  # "approver x1": the roles still to approve, by name
        roles = lang._(", ").join(
            lang._(
                "{role} ×{count}",
                role=lang._(f"role {step.split(' x')[0]}"),
                count=step.split(" x")[1],
            )
            for step in waiting
        )
        return flash_redirect(
            path, done=lang._("Version approved; it still waits for: {roles}.", roles=roles)
        )
    return flash_redirect(
        path, done=lang._("Version approved; it is now {status}.", status=lang._(status))
    )


@router.post("/agreements/{code}/review/{version_id}/reject", response_model=None)
def reject_version(
    code: str,
    version_id: Id,
    request: Request,
    reason: str = Form(default="", max_length=1000),
    csrf: str = Form(default=""),
) -> Response:
    """Send a submitted version back to its author as a draft, saying why."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return act(
        request,
        f"/agreements/{code}/review",
        lambda session: review.reject(
            session, version_id, reason=reason, actor=viewer.actor, now=company_now()
        ),
        _lang(request)._("Version sent back to draft."),
    )


# ---- users ------------------------------------------------------------------------------------


@router.get("/users", response_model=None)
def users(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    admin = Role.ADMINISTRATOR in viewer.actor.roles
    with unit_of_work(request.app.state.read_sessions) as session:
        # Everyone manages their own tokens and second factor; only administrators see users.
        rows = list(session.scalars(select(User).order_by(User.code))) if admin else []
        tokens = list(
            session.scalars(
                select(ApiToken)
                .where(ApiToken.user_id == viewer.actor.id)
                .order_by(ApiToken.id.desc())
            )
        )
    return _page(
        request,
        "users.html",
        viewer,
        rows=rows,
        tokens=tokens,
        roles=[r.value for r in Role],
        admin=admin,
    )


@router.post("/users", response_model=None)
def user_create(  # noqa: PLR0917 - one form field each
    request: Request,
    code: Annotated[str, Form(min_length=1, max_length=64)],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    role: Annotated[Role, Form()],
    customer: str = Form(default="", max_length=64),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    # The new user's first password, and a staff user's second factor: shown once, to hand
    # over; the user must change the password at the first sign-in.
    password = secrets.token_urlsafe(12)
    factor = None
    try:
        with unit_of_work(request.app.state.sessions) as session:
            now = company_now()
            create_user(
                session,
                code,
                name=name,
                roles=[role],
                customer_code=customer or None,
                actor=viewer.actor,
                now=now,
            )
            set_password(session, code, password, actor=viewer.actor, now=now)
            if role is not Role.CUSTOMER:
                factor = enrol_second_factor(session, code, actor=viewer.actor, now=now)
    except FanliError as error:
        # The form comes back filled as it was sent, beside the reason it was refused.
        kept = {"code": code, "name": name, "role": role.value, "customer": customer}
        return flash_redirect("/users", error=say(_lang(request), error), kept=kept)
    # Shown on the next page, once (handover.py): a reload of it does not post the form again.
    token = request.app.state.handovers.put(
        viewer.actor.code,
        {
            "code": code,
            "password": password,
            "factor": factor,
            "uri": provisioning_uri(factor, code) if factor else None,
        },
    )
    return RedirectResponse(f"/users/created/{token}", status_code=303)


@router.get("/users/created/{token}", response_model=None)
def user_created(token: str, request: Request) -> Response:
    """A new user's first password and second factor, to the administrator who created the
    user, once."""
    viewer, refused = _staff(request)  # PAGES: as POST /api/users
    if refused or viewer is None:
        return refused or _to_signin()
    shown = request.app.state.handovers.take(viewer.actor.code, token)
    if shown is None:
        return flash_redirect(
            "/users",
            error=_lang(request)._(
                "A new user's first password is shown once, and that was it. If it was not "
                "noted, set a new one for the user."
            ),
        )
    return _page(request, "new_user.html", viewer, **shown)


@router.post("/users/{code}/disable", response_model=None)
def user_disable(
    code: str,
    request: Request,
    reason: str = Form(default="", max_length=500),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return act(
        request,
        "/users",
        lambda session: disable_user(
            session, code, reason=reason, actor=viewer.actor, now=company_now()
        ),
        _lang(request)._("User {code} disabled.", code=code),
    )


@router.post("/tokens", response_model=None)
def token_create(
    request: Request,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    role: Annotated[Role, Form()],
    days: int = Form(default=90, ge=1, le=366),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            token, _row = create_token(
                session, name=name, roles=[role], days=days, actor=viewer.actor, now=company_now()
            )
    except FanliError as error:
        return flash_redirect("/users", error=say(_lang(request), error))
    return _page(request, "secret.html", viewer, title_key="API token", secret=token, uri=None)


@router.post("/tokens/{token_id}/revoke", response_model=None)
def token_revoke(token_id: Id, request: Request, csrf: str = Form(default="")) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return act(
        request,
        "/users",
        lambda session: revoke_token(session, token_id, actor=viewer.actor, now=company_now()),
        _lang(request)._("Token {id} revoked.", id=token_id),
    )


@router.post("/password", response_model=None)
def change_password(
    request: Request,
    current: str = Form(default="", max_length=200),
    new: str = Form(default="", max_length=200),
    repeat: str = Form(default="", max_length=200),
    csrf: str = Form(default=""),
) -> Response:
    """The signed-in user's own password, given the present one; every session then ends."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return change_own_password(
        request, viewer, current=current, new=new, repeat=repeat, back="/users"
    )


@router.post("/second-factor", response_model=None)
def second_factor(request: Request, csrf: str = Form(default="")) -> Response:
    """A new secret to add to an authenticator; the current one stays until a code from the new
    one confirms it (``/second-factor/confirm``)."""
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return _new_factor_page(request, viewer, new_second_factor_secret())


def _new_factor_page(request: Request, viewer: Viewer, secret: str, error: str = "") -> Response:
    uri = provisioning_uri(secret, viewer.actor.code)
    return _page(
        request,
        "secret.html",
        viewer,
        title_key="Second factor",
        secret=secret,
        uri=uri,
        confirm=True,
        error=error,
    )


@router.post("/second-factor/confirm", response_model=None)
def confirm_second_factor(
    request: Request,
    secret: str = Form(max_length=64),
    code: str = Form(default="", max_length=12),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _checked(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            enrol_second_factor(
                session,
                viewer.actor.code,
                actor=viewer.actor,
                now=company_now(),
                secret=secret,
                confirmation=code,
            )
    except FanliError as error:
        return _new_factor_page(request, viewer, secret, error=say(_lang(request), error))
    # Every session of the user ended with the old secret: sign in with the new one.
    # The code typed to confirm it is spent (a code signs in once): the next one signs in.
    return flash_redirect(
        "/signin",
        done=_lang(request)._(
            "The new second factor is in use. Sign in with the next code your app shows: the "
            "one you typed is used up."
        ),
    )
