"""The web application: server-rendered pages (Jinja2, HTMX, Bootstrap, ECharts) over the same
services and queries as the API. It adds screens, not business rules.

Sign-in is the API's: the same session cookie (Secure, HttpOnly, SameSite=Strict), the same
throttling and second factor. A form that changes something carries the session's CSRF token,
and HTMX sends it as ``X-CSRF-Token``. Staff pages need a staff role. The portal serves only
the signed-in customer user's own entity. A page a role may not see answers 404, as a missing
one does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from starlette.routing import Match

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.agreements.queries import DEFAULT_CURRENCY
from fanli.agreements.terms import Agreement, TermsRuleError
from fanli.compliance.queries import NoPolicyError, policy_in_force
from fanli.config import company_now
from fanli.customers.models import Customer
from fanli.customers.queries import (
    CustomerNotFoundError,
    assigned_codes,
    bank_accounts,
    customer_by_code,
    due_diligence_gaps,
)
from fanli.db.session import unit_of_work
from fanli.engine.explain import explain
from fanli.engine.results import ResultRow
from fanli.interfaces.api.deps import SESSION_COOKIE, Id, Offset, matrix, scope_for
from fanli.kit.errors import Code, FanliError, Month, Said, said_from_json
from fanli.ledger import overview
from fanli.ledger.queries import result_rows, statement_rows
from fanli.oversight.models import Finding, FindingStatus
from fanli.settlements import balance as balances
from fanli.settlements import service as settlement_service
from fanli.settlements import statements as settlement_statements
from fanli.settlements.models import (
    BalanceCredit,
    BalanceUse,
    Settlement,
    SettlementStatus,
    StatementResponse,
    UseStatus,
)
from fanli.settlements.queries import payouts_of, settled_results, waiting_for
from fanli.settlements.queries import settlements as list_settlements
from fanli.settlements.statements import open_disputes, settlement_standings
from fanli.users.actor import Actor, Role
from fanli.users.auth import (
    Outcome,
    WrongPasswordError,
    check_session,
    password_refused,
    set_password,
    settle_session,
    sign_in,
    sign_out,
)

from . import i18n, plain

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(files("fanli.interfaces.web").joinpath("templates")))
STAFF = frozenset(Role) - {Role.CUSTOMER}
PAGE = 50


@dataclass(frozen=True)
class Viewer:
    actor: Actor
    csrf: str
    must_change_password: bool = False  # handed over by an administrator: see ``password_gate``


def _lang(request: Request) -> i18n.Lang:
    return i18n.Lang(
        i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language", "")),
        request.app.state.settings.timezone,
    )


def _viewer(request: Request) -> Viewer | None:
    """The signed-in viewer, checked once per request (``password_gate`` checks first)."""
    if "viewer" not in request.scope:
        request.scope["viewer"] = _check_viewer(request)
    viewer: Viewer | None = request.scope["viewer"]
    return viewer


def _check_viewer(request: Request) -> Viewer | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    now = company_now()
    with unit_of_work(request.app.state.read_sessions) as session:
        check = check_session(session, token, now=now)
    if check.end_reason or check.touch:
        with unit_of_work(request.app.state.sessions) as session:
            settle_session(session, check, now=now)
    if check.who is None or check.who.csrf_token is None:
        return None
    return Viewer(check.who.actor, check.who.csrf_token, check.who.password_change_required)


class PasswordChangeRequired(Exception):  # noqa: N818 - not an error: a detour
    """The viewer must change the password an administrator handed over before anything else;
    answered with a redirect to the page that changes it (``to_password_change``)."""


# What a session may open before its user has changed a password an administrator handed over.
WHILE_PASSWORD_CHANGES = frozenset(
    {
        ("GET", "/password"),
        ("POST", "/password"),
        ("POST", "/portal/password"),
        ("GET", "/signin"),
        ("POST", "/signin"),
        ("POST", "/signout"),
        ("GET", "/lang/{code}"),
    }
)


def password_gate(request: Request) -> None:
    """A dependency of every page: a viewer whose password was handed over reaches nothing but
    the pages in ``WHILE_PASSWORD_CHANGES`` (a password two people know is nobody's). The API
    keeps the same rule (``deps.authorized``)."""
    route = request.scope.get("route")
    if (request.method, getattr(route, "path", "")) in WHILE_PASSWORD_CHANGES:
        return
    viewer = _viewer(request)
    if viewer is not None and viewer.must_change_password:
        raise PasswordChangeRequired


def to_password_change(request: Request) -> Response:
    """Where ``PasswordChangeRequired`` sends the browser: the password page (for an HTMX
    request, the whole page goes there, not a fragment of it)."""
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": "/password"})
    return RedirectResponse("/password", status_code=303)


FLASH = "fanli_flash"  # a message for the next page, after a redirect


def flash_redirect(
    path: str,
    *,
    done: str = "",
    error: str = "",
    invalid: str = "",
    kept: dict[str, str] | None = None,
) -> RedirectResponse:
    """Back to ``path`` after a POST (a reload does not repeat it), with what happened: done,
    a refusal (``error``, shown by the page) or a form that was not accepted (``invalid``, shown
    by every page above its content); ``kept``: what the refused form held, to fill it again.
    The message travels in a short-lived cookie, not the address: a link cannot put words on
    our pages."""
    response = RedirectResponse(path, status_code=303)
    said = {"done": done, "error": error, "invalid": invalid, "kept": kept or {}}
    text = json.dumps(said, ensure_ascii=False)
    # base64url: a cookie value cannot carry quotes, commas or spaces as they are.
    message = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")
    response.set_cookie(FLASH, message, max_age=60, httponly=True, secure=True, samesite="strict")
    return response


def say(lang: i18n.Lang, error: FanliError, *, alone: bool = True) -> str:
    """A service's refusal in the reader's language, when the service said it with a template
    the catalogs know (``FanliError.said``); else its own English sentence.

    The services' English sentences begin in lower case, as they read inside the command
    line's "error: ...". Shown ``alone`` (a page's alert), a sentence that opens with a word
    begins with a capital; one that opens with a value ("{code} version {version} ...") keeps
    the value's own case: a user's or customer's code is written as its owner wrote it. A
    sentence inside another ("sales.csv, row 3: ...") or among a list of problems that open
    with field names stays as it is."""
    if error.template is None:
        return str(error)
    text = lang._(error.template, **{key: _said(lang, v) for key, v in error.values.items()})
    first = text[:1].upper()  # "ß".upper() is "SS": such a sentence is left as it is
    if (
        alone
        and lang.code == "en"
        and len(first) == 1
        and _opens_with_word(error.template, error.values)
    ):
        text = first + text[1:]
    return text


def _opens_with_word(template: str, values: Mapping[str, Any]) -> bool:
    """Whether a said sentence begins with one of its own words: a lower-case letter, or a
    value that is itself a said sentence beginning so ("{subject} is blocked: ...", whose
    subject is "agreement {code} version {version}")."""
    if template[:1].islower():
        return True
    opening = re.match(r"\{(\w+)\}", template)
    value = values.get(opening[1]) if opening else None
    return isinstance(value, Said) and _opens_with_word(value.template, value.values)


def say_part(lang: i18n.Lang, sentence: Said) -> str:
    """One said sentence (a part of a list of problems) in the reader's language."""
    return str(_said(lang, sentence))


def _said(lang: i18n.Lang, value: Any) -> Any:
    """A value of a said error in the reader's language: codes and sentences translated, a list
    of parts numbered."""
    if isinstance(value, Role):  # a role by its name, as the users page names it
        return lang._(f"role {value}")
    if isinstance(value, StrEnum | Code):
        return lang._(value)
    if isinstance(value, Month):  # 2026年3月, Mar 2026
        return lang.month(value)
    if isinstance(value, dt.date):  # a day in the reader's format
        return lang.date(value)
    if isinstance(value, Said):
        return lang._(value.template, **{key: _said(lang, v) for key, v in value.values.items()})
    if isinstance(value, list):
        parts = [_said(lang, part) for part in value]
        return lang._("; ").join(f"({number}) {part}" for number, part in enumerate(parts, 1))
    if isinstance(value, tuple):  # names, such as the settlement forms a policy allows
        return lang._(", ").join(str(_said(lang, item)) for item in value)
    return value


def act(
    request: Request, path: str, step: Callable[[Session], object], done: str
) -> RedirectResponse:
    """One service call in its own unit of work, then back to ``path`` saying ``done``, or why
    the service refused (nothing stored then)."""
    try:
        with unit_of_work(request.app.state.sessions) as session:
            step(session)
    except FanliError as error:
        return flash_redirect(path, error=say(_lang(request), error))
    return flash_redirect(path, done=done)


def change_own_password(
    request: Request, viewer: Viewer, *, current: str, new: str, repeat: str, back: str
) -> RedirectResponse:
    """The viewer's own password, given the present one (staff on /users, customer users in
    the portal); every session then ends. A wrong present password counts towards the sign-in
    throttle, recorded in a transaction of its own (the change itself rolls back)."""
    lang = _lang(request)
    if new != repeat:
        return flash_redirect(back, error=lang._("The two new passwords differ."))
    if viewer.must_change_password:
        back = "/password"  # nowhere else to go back to yet
    now = company_now()
    try:
        with unit_of_work(request.app.state.sessions) as session:
            set_password(
                session, viewer.actor.code, new, actor=viewer.actor, now=now, current=current
            )
    except WrongPasswordError as error:
        source = request.client.host if request.client else "unknown"
        with unit_of_work(request.app.state.sessions) as session:
            password_refused(session, viewer.actor.code, source=source, now=now)
        return flash_redirect(back, error=say(lang, error))
    except FanliError as error:
        return flash_redirect(back, error=say(lang, error))
    return flash_redirect("/signin", done=lang._("Your password is changed: sign in with it."))


def _flash(request: Request) -> dict[str, Any]:
    try:
        found = json.loads(base64.urlsafe_b64decode(request.cookies.get(FLASH, "") or "e30="))
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        return {}
    if not isinstance(found, dict):
        return {}
    flashed: dict[str, Any] = {
        key: str(found[key]) for key in ("done", "error", "invalid") if found.get(key)
    }
    kept = found.get("kept")
    if isinstance(kept, dict) and kept:
        flashed["kept"] = {str(key): str(value) for key, value in kept.items()}
    return flashed


def _page(
    request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any
) -> HTMLResponse:
    lang = _lang(request)
    flashed = _flash(request)
    response = _render(request, template, viewer, status, lang, {**flashed, **context})
    if flashed:
        response.delete_cookie(FLASH)
    return response


def _render(  # noqa: PLR0917 - the page's parts
    request: Request,
    template: str,
    viewer: Viewer | None,
    status: int,
    lang: i18n.Lang,
    context: dict[str, Any],
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {
            "lang": lang,
            "_": lang._,
            "n_": lang.n_,  # n_(singular, plural, count): "1 problem", "3 problems"
            "viewer": viewer,
            "locales": i18n.NAMES,
            "staff": viewer is not None and bool(viewer.actor.roles & STAFF),
            # may("/imports"), may("/accruals", "POST"): show a link or a form only to whom it
            # is open.
            "may": lambda path, method="GET": may(viewer, path, method),
            # said(finding.summary_said, finding.summary), said(issue.said, issue.message): a
            # sentence (or a stored one) in the reader's language; the English when there is none.
            "said": lambda stored, english: (
                _said(lang, stored)
                if isinstance(stored, Said)
                else _said(lang, said_from_json(stored))
                if stored
                else english
            ),
            "one_day": dt.timedelta(days=1),  # periods end on an exclusive day; pages show the last
            # grants("POST /api/..."): what the matrix gives the viewer on an API route, for the
            # parts of a form (a finding's assign and dismiss are the auditors').
            "grants": lambda api_route: viewer is not None and scope(viewer, api_route) is not None,
            # link("/customers/{code}", href, text): a link if the viewer may open the page,
            # else the text alone.
            "link": lambda pattern, href, text: (
                Markup('<a href="{}">{}</a>').format(href, text)
                if may(viewer, pattern)
                else escape(text)
            ),
            # Every page names the viewer's long operations still running (jobs.py).
            "under_way": request.app.state.jobs.under_way(viewer.actor.code) if viewer else [],
            "job_title": lambda job: lang._(
                job.title,
                **{key: _said(lang, value) for key, value in job.title_values.items()},
            ),
            **context,
        },
        status_code=status,
    )


def _not_found(request: Request, viewer: Viewer | None) -> HTMLResponse:
    return _page(request, "not_found.html", viewer, status=404)


def _to_signin() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303)


def scope(viewer: Viewer, api_route: str) -> str | None:
    """What the API's authorization matrix grants the viewer on the API route a page mirrors:
    "all", "assigned", "own", or None. Pages show what the API would, no more."""
    return scope_for(matrix().get(api_route), viewer.actor)


def visible(session: Session, viewer: Viewer, api_route: str) -> set[str] | None:
    """The customer codes the viewer may see through ``api_route`` (None: all of them)."""
    granted = scope(viewer, api_route)
    if granted == "all":
        return None
    if granted == "assigned":
        return set(assigned_codes(session, viewer.actor.code))
    if granted == "own" and viewer.actor.customer_code:
        return {viewer.actor.customer_code}
    return set()


def sees_customer(session: Session, viewer: Viewer, code: str) -> bool:
    """Whether the viewer may see customer ``code``'s pages (as its statement in the API)."""
    shown = visible(session, viewer, "GET /api/customers/{code}/statement")
    return shown is None or code in shown


def _csrf_ok(viewer: Viewer, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(sent or "", viewer.csrf)


# ---- sign-in and language ----------------------------------------------------------------------


@router.get("/", response_model=None)
def home(request: Request) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_signin()
    return RedirectResponse(
        "/dashboard" if viewer.actor.roles & STAFF else "/portal", status_code=303
    )


@router.get("/signin", response_class=HTMLResponse)
def signin_form(request: Request) -> HTMLResponse:
    return _page(request, "signin.html", None)


@router.post("/signin", response_model=None)
def signin(
    request: Request,
    user: str = Form(max_length=64),
    password: str = Form(max_length=200),
    totp: str = Form(default="", max_length=12),  # "123 456", as the apps show it
) -> Response:
    source = request.client.host if request.client else "unknown"
    with unit_of_work(request.app.state.sessions) as session:
        result = sign_in(
            session, user, password, totp_code=totp or None, source=source, now=company_now()
        )
    if result.outcome is not Outcome.SIGNED_IN or result.token is None:
        lang = _lang(request)
        message = (
            lang._("Too many failed sign-ins; wait 15 minutes.")
            if result.outcome is Outcome.THROTTLED
            else lang._("Wrong user, password or second-factor code.")
        )
        # The form again, with the reason: a page, not an error (the attempt is recorded).
        return _page(request, "signin.html", None, error=message, user=user)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, result.token, httponly=True, secure=True, samesite="strict")
    return response


@router.get("/password", response_model=None)
def password_page(request: Request) -> Response:
    """The viewer's own password on a page of its own: where a password an administrator
    handed over must be changed first (``password_gate``), and open to anyone signed in."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_signin()
    return _page(request, "password.html", viewer)


@router.post("/signout", response_model=None)
def signout(request: Request, csrf: str = Form(default="")) -> Response:
    viewer = _viewer(request)
    token = request.cookies.get(SESSION_COOKIE)
    if viewer is None or not token or not _csrf_ok(viewer, csrf):
        # Another site cannot sign anyone out: without the token nothing happens.
        return RedirectResponse("/", status_code=303)
    with unit_of_work(request.app.state.sessions) as session:
        sign_out(session, token, now=company_now())
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/lang/{code}", response_model=None)
def language(code: str, request: Request, back: str = "/") -> Response:
    target = back if back.startswith("/") and not back.startswith("//") else "/"
    path, _, query = target.partition("?")
    # A page shown in answer to a form (POST /agreements/11/submit) cannot be fetched again:
    # go back to the nearest page above it that can (/agreements), without the form's query.
    while path != "/" and not _gets(request, path):
        path, query = path.rsplit("/", 1)[0] or "/", ""
    response = RedirectResponse(f"{path}?{query}" if query else path, status_code=303)
    if code in i18n.LOCALES:
        response.set_cookie(i18n.COOKIE, code, samesite="lax", max_age=365 * 86400)
    return response


def _gets(request: Request, path: str) -> bool:
    """Whether some route of the application answers GET ``path``."""
    scope = {"type": "http", "path": path, "method": "GET"}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


# ---- the staff's pages -------------------------------------------------------------------------


# Each staff page, and each form it posts, does what one API route does: it is open to whom the
# API's matrix (authorization.yaml) opens that route, and to nobody else ("staff": to every
# staff role; the page checks further, or shows only the viewer's own things). A page missing
# here is refused; tests/web/test_access.py checks that every route of the web app is listed.
PAGES: dict[tuple[str, str], str | tuple[str, ...]] = {
    ("GET", "/dashboard"): "staff",  # every figure on it is narrowed to what the viewer may see
    ("GET", "/customers"): "GET /api/customers",
    ("GET", "/customers/{code}"): "GET /api/customers/{code}/statement",
    ("GET", "/customers/{code}/statements/{start}"): "GET /api/customers/{code}/statement",
    ("POST", "/customers/{code}/balance-uses"): "POST /api/balance-uses",
    # Settlements and versions to approve, balance uses to decide, disputes to answer: open to
    # whoever may do one of them (each list is narrowed to what the viewer may act on).
    ("GET", "/inbox"): ("GET /api/settlements/waiting", "POST /api/disputes/{response_id}/answer"),
    ("POST", "/inbox/{settlement_id}/approve"): "POST /api/settlements/{settlement_id}/approvals",
    ("POST", "/inbox/uses/{use_id}"): "POST /api/balance-uses/{use_id}/decision",
    ("POST", "/inbox/disputes/{response_id}"): "POST /api/disputes/{response_id}/answer",
    ("GET", "/agreements"): "GET /api/agreements",
    ("POST", "/agreements"): "POST /api/agreements",
    ("POST", "/agreements/check"): "POST /api/agreements",
    ("POST", "/agreements/preview"): "POST /api/agreements",
    ("POST", "/agreements/{version_id}/submit"): "POST /api/agreements/{code}/submission",
    ("POST", "/agreements/{version_id}/discard"): "POST /api/agreements/{code}/discard",
    ("GET", "/agreements/{code}/review"): "GET /api/agreements/{code}",
    ("POST", "/agreements/{code}/review/{version_id}"): "POST /api/agreements/{code}/approvals",
    (
        "POST",
        "/agreements/{code}/review/{version_id}/reject",
    ): "POST /api/agreements/{code}/rejection",
    ("GET", "/imports"): "GET /api/batches",
    ("POST", "/imports"): "POST /api/imports/{kind}",
    ("POST", "/imports/{batch_id}/void"): "POST /api/batches/{batch_id}/void",
    ("GET", "/accruals"): "GET /api/accrual-runs",
    ("POST", "/accruals"): "POST /api/accrual-runs",
    ("GET", "/accruals/{run_id}"): "GET /api/accrual-runs",
    ("GET", "/accruals/{run_id}/explain"): "GET /api/accrual-runs",
    ("GET", "/settlements/{settlement_id}/workings/{line}"): "GET /api/settlements/{settlement_id}",
    ("GET", "/jobs/{job_id}"): "staff",  # only the job's owner sees it
    ("GET", "/settlements"): "GET /api/settlements",
    ("POST", "/settlements"): "POST /api/settlements",
    ("POST", "/settlements/{settlement_id}/pay"): "POST /api/settlements/{settlement_id}/payout",
    (
        "POST",
        "/settlements/{settlement_id}/reject",
    ): "POST /api/settlements/{settlement_id}/rejection",
    (
        "POST",
        "/settlements/{settlement_id}/refresh",
    ): "POST /api/settlements/{settlement_id}/refresh",
    ("GET", "/periods"): "GET /api/periods",
    ("POST", "/periods/{code}/close"): "POST /api/periods/{code}/close",
    ("POST", "/periods/{code}/gl"): "POST /api/periods/{code}/gl-exports",
    ("GET", "/audit"): "GET /api/audit/findings",
    ("POST", "/audit/runs"): "POST /api/audit/runs",
    # Assign, resolve or dismiss: the widest of the three; the service checks the one asked.
    ("POST", "/audit/findings/{finding_id}"): "POST /api/audit/findings/{finding_id}/resolution",
    ("GET", "/policy"): "GET /api/policy",
    ("GET", "/users"): "staff",  # everyone's own tokens and second factor
    ("POST", "/users"): "POST /api/users",
    ("GET", "/users/created/{token}"): "POST /api/users",  # what the creation hands over
    ("POST", "/users/{code}/disable"): "POST /api/users/{code}/disable",
    ("POST", "/tokens"): "staff",
    ("POST", "/tokens/{token_id}/revoke"): "staff",
    ("POST", "/second-factor"): "staff",
    ("POST", "/password"): "staff",
    ("POST", "/second-factor/confirm"): "staff",
}


def may(viewer: Viewer | None, path: str, method: str = "GET") -> bool:
    """Whether the viewer may open the staff page ``path`` (a route path: "/accruals/{run_id}"),
    or post its form with ``method`` POST."""
    if viewer is None or not viewer.actor.roles & STAFF:
        return False
    api_route = PAGES.get((method, path))
    if api_route is None:
        return False
    if isinstance(api_route, tuple):  # any one of them
        return any(scope(viewer, route) is not None for route in api_route)
    return api_route == "staff" or scope(viewer, api_route) is not None


def _staff(request: Request) -> tuple[Viewer | None, Response | None]:
    """The signed-in staff viewer, if the page's API route is open to them (``PAGES``)."""
    viewer = _viewer(request)
    if viewer is None:
        return None, _to_signin()
    route = request.scope.get("route")
    if not may(viewer, getattr(route, "path", ""), request.method):
        return viewer, _not_found(request, viewer)
    return viewer, None


@router.get("/dashboard", response_model=None)
def dashboard(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    lang = _lang(request)
    today = lang.today()
    with unit_of_work(request.app.state.read_sessions) as session:
        shown = visible(session, viewer, "GET /api/customers")
        totals = overview.period_totals(session, shown)
        leaders = overview.leaders(session, shown)
        near = overview.near_misses(session, request.app.state.facts, today, shown)
        waiting = waiting_for(session, viewer.actor, today)
        disputes = len(_open_disputes(session, viewer))
        open_findings = session.scalar(
            select(func.count())
            .select_from(Finding)
            .where(Finding.status.in_([FindingStatus.OPEN, FindingStatus.ASSIGNED]))
        )
    # One section per currency: amounts in two currencies are never added together.
    currencies = []
    for code in sorted(set(totals) | set(leaders)) or [DEFAULT_CURRENCY]:
        series = totals.get(code, [])[-12:]  # outstanding runs from the first period
        top = leaders.get(code, overview.Leaders([], []))
        currencies.append(
            {
                "code": code,
                "series": series,
                "accrued": sum((row.accrued for row in series), Decimal(0)),
                "settled": sum((row.settled for row in series), Decimal(0)),
                "chart": {
                    "periods": [lang.month(row.period) for row in series],
                    "names": [lang._("Accrued"), lang._("Settled")],
                    "accrued": [float(row.accrued) for row in series],  # for the chart only
                    "settled": [float(row.settled) for row in series],
                },
                "top_customers": top.customers,
                "top_programmes": top.programmes,
            }
        )
    return _page(
        request,
        "dashboard.html",
        viewer,
        currencies=currencies,
        waiting=waiting.settlements,
        waiting_versions=waiting.agreement_versions,
        disputes=disputes,
        open_findings=open_findings or 0,
        near=near,
    )


@router.get("/customers", response_model=None)
def customers(request: Request, q: str = "", offset: Offset = 0) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    offset = max(offset, 0)
    with unit_of_work(request.app.state.read_sessions) as session:
        query = select(Customer).order_by(Customer.code)
        if q:
            # The words typed, literally: % and _ are characters to find, not wildcards.
            typed = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            like = f"%{typed}%"
            query = query.where(
                or_(
                    Customer.code.ilike(like, escape="\\"),
                    Customer.legal_name.ilike(like, escape="\\"),
                )
            )
        shown = visible(session, viewer, "GET /api/customers")
        if shown is not None:
            query = query.where(Customer.code.in_(shown))
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(session.scalars(query.offset(offset).limit(PAGE)))
    return _page(
        request, "customers.html", viewer, rows=rows, q=q, offset=offset, total=total, page=PAGE
    )


@dataclass(frozen=True)
class Progress:
    """One statement row, with how far the customer is from the next band."""

    row: Any
    tier: overview.TierProgress
    explanation: str  # how the rebate was worked out, in the reader's language

    @property
    def last_day(self) -> dt.date:
        """The rebate period's last day (its end is exclusive)."""
        end: dt.date = self.row.period_end
        return end - dt.timedelta(days=1)


def _progress(
    session: Session, rows: list[Any], results: list[ResultRow], lang: i18n.Lang
) -> list[Progress]:
    by_key = {(r.agreement_id, r.version, r.period_start): r for r in results}
    language = "zh" if lang.code == "zh_CN" else "en"
    found = []
    for row in rows:
        version = session.scalar(
            select(AgreementVersion)
            .join(AgreementRecord, AgreementRecord.id == AgreementVersion.agreement_id)
            .where(AgreementRecord.code == row.agreement_code)
            .where(AgreementVersion.version == row.version)
        )
        text = ""
        result = by_key.get((row.agreement_code, row.version, row.period_start))
        if version is not None and result is not None:
            # The engine's own account of the number: the same text for staff and customer.
            previous = next(
                (
                    r
                    for r in results
                    if (r.agreement_id, r.version, r.beneficiary_id)
                    == (result.agreement_id, result.version, result.beneficiary_id)
                    and r.period_index == result.period_index - 1
                ),
                None,
            )
            terms = Agreement.model_validate(version.terms)
            text = explain(terms, result, None, previous=previous, language=language)
        tier = overview.tier_progress(
            version.terms if version else {}, row.tier, row.tier_basis, row.rebate
        )
        found.append(Progress(row, tier, text))
    return found


def _statement(session: Session, store: Any, code: str, lang: i18n.Lang) -> dict[str, Any]:
    """What a customer sees and what the staff see of it: the same numbers, from the same runs."""
    customer = customer_by_code(session, code)
    today = lang.today()
    try:
        _row, policy = policy_in_force(session, today)
        gaps = [
            _said(lang, gap)
            for gap in due_diligence_gaps(session, customer, policy.due_diligence.required, today)
        ]
    except NoPolicyError:
        gaps = []
    return {
        "customer": customer,
        "progress": _progress(
            session, statement_rows(session, store, code), result_rows(session, store, code), lang
        ),
        "settlements": list_settlements(session, beneficiary=code),
        "payouts": payouts_of(session, code),
        "balance": balances.balance(session, code, today),
        "gaps": gaps,
        "accounts": bank_accounts(session, code),
        "one_day": dt.timedelta(days=1),  # credits are valid until an exclusive day
    }


@router.get("/customers/{code}", response_model=None)
def customer(code: str, request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        if not sees_customer(session, viewer, code):
            return _not_found(request, viewer)
        try:
            statement = _statement(session, request.app.state.facts, code, _lang(request))
        except CustomerNotFoundError:
            return _not_found(request, viewer)
        # Bank accounts and due diligence only for the roles the API shows them to.
        if scope(viewer, "GET /api/customers/{code}/bank-accounts") is None:
            statement["accounts"] = None
        if scope(viewer, "GET /api/customers/{code}/due-diligence") is None:
            statement["gaps"] = None
        statement["may_use_balance"] = scope(viewer, "POST /api/balance-uses") is not None
        # The period statements, as the customer's portal lists them, each opening its page.
        statement["statements"] = _period_list(
            session, request.app.state.facts, code, statement, _lang(request)
        )
    return _page(request, "customer.html", viewer, key=secrets.token_urlsafe(12), **statement)


@router.get("/inbox", response_model=None)
def inbox(request: Request) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        waiting = waiting_for(session, viewer.actor, _lang(request).today())
        # Balance uses someone else asked for, to those who may decide them (the service checks
        # again, and refuses the one who asked).
        decides = scope(viewer, "POST /api/balance-uses/{use_id}/decision") is not None
        uses = (
            []
            if not decides
            else list(
                session.execute(
                    select(BalanceUse, BalanceCredit.customer_code)
                    .join(BalanceCredit, BalanceCredit.id == BalanceUse.credit_id)
                    .where(BalanceUse.status == UseStatus.PENDING)
                    .where(BalanceUse.requested_by != viewer.actor.code)
                    .order_by(BalanceUse.id)
                ).all()
            )
        )
        disputes = _open_disputes(session, viewer)
        # Approved settlements wait for whoever pays them (of the customers they may see).
        to_pay: list[Settlement] = []
        route = "POST /api/settlements/{settlement_id}/payout"
        if scope(viewer, route) is not None:
            payable = visible(session, viewer, route)
            to_pay = [
                s
                for s in list_settlements(session, status=SettlementStatus.APPROVED)
                if payable is None or s.beneficiary in payable
            ]
        # An approver should see that the customer disputes the numbers being approved.
        standing = settlement_standings(session, request.app.state.facts, waiting.settlements)
        outdated = settlement_service.outdated(
            session, request.app.state.facts, waiting.settlements
        )
        worked = (
            workings(session, waiting.settlements)
            if may(viewer, "/settlements/{settlement_id}/workings/{line}")
            else {}
        )
    keys = {s.id: secrets.token_urlsafe(12) for s in waiting.settlements}
    return _page(
        request,
        "inbox.html",
        viewer,
        waiting=waiting.settlements,
        workings=worked,
        versions=waiting.agreement_versions,
        disputes=disputes,
        standing=standing,
        outdated=outdated,
        to_pay=to_pay,
        answers_disputes=scope(viewer, "POST /api/disputes/{response_id}/answer") is not None,
        keys=keys,
        uses=uses,
        use_key=secrets.token_urlsafe(12),
    )


def workings(session: Session, settlements: list[Settlement]) -> dict[int, list[tuple[str, int]]]:
    """Where each settlement's amount comes from: for each result it settles, the address of
    the engine's explanation of it (``settlement_workings``), with the version's number. An
    approver reads the calculation before approving the amount."""
    return {
        settlement_id: [
            (f"/settlements/{settlement_id}/workings/{index}", result.version)
            for index, result in enumerate(results)
        ]
        for settlement_id, results in settled_results(session, settlements).items()
    }


def _open_disputes(session: Session, viewer: Viewer) -> list[StatementResponse]:
    """The statements whose customer's latest answer is a dispute, of the customers the viewer
    may see: someone has to answer them (the numbers, or a correction and a new statement)."""
    route = "GET /api/customers/{code}/statement"
    if scope(viewer, route) is None:
        return []
    return open_disputes(session, visible(session, viewer, route))


@router.post("/inbox/{settlement_id}/approve", response_model=None)
def approve(settlement_id: Id, request: Request, key: str = Form(max_length=64)) -> Response:
    viewer, refused = _staff(request)
    if refused or viewer is None:
        return refused or _to_signin()
    lang = _lang(request)
    if not _csrf_ok(viewer, request.headers.get("x-csrf-token")):
        return HTMLResponse(lang._("This form has expired; reload the page."), status_code=403)
    try:
        with unit_of_work(request.app.state.sessions) as session:
            done = settlement_service.approve(
                session,
                request.app.state.facts,
                settlement_id,
                idempotency_key=f"web-{key}",
                actor=viewer.actor,
                now=company_now(),
            )
            status = done.status
    except FanliError as error:
        return HTMLResponse(
            f'<span class="text-danger">{_escape(say(_lang(request), error))}</span>',
            status_code=200,
        )
    return HTMLResponse(f'<span class="badge text-bg-success">{_escape(lang._(status))}</span>')


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


# ---- the customer portal -----------------------------------------------------------------------


@router.get("/portal", response_model=None)
def portal(request: Request) -> Response:
    viewer = _viewer(request)
    if viewer is None:
        return _to_signin()
    code = viewer.actor.customer_code
    if Role.CUSTOMER not in viewer.actor.roles or not code:
        return _not_found(request, viewer)
    lang = _lang(request)
    with unit_of_work(request.app.state.read_sessions) as session:
        statement = _statement(session, request.app.state.facts, code, lang)
        statements = _period_list(session, request.app.state.facts, code, statement, lang)
        shown = sorted({(p.row.agreement_code, p.row.version) for p in statement["progress"]})
        agreements = []
        for agreement_code, number in shown:
            found = session.execute(
                select(AgreementRecord.name, AgreementVersion.terms)
                .join(AgreementVersion, AgreementVersion.agreement_id == AgreementRecord.id)
                .where(AgreementRecord.code == agreement_code)
                .where(AgreementVersion.version == number)
            ).first()
            if found is not None:
                name, terms = found
                agreements.append((agreement_code, number, name, plain.describe(terms, lang)))
    return _page(
        request, "portal.html", viewer, agreements=agreements, statements=statements, **statement
    )


def _period_list(
    session: Session, store: Any, code: str, statement: dict[str, Any], lang: i18n.Lang
) -> list[tuple[dt.date, dt.date, bool, StatementResponse | None, Any, bool]]:
    """A customer's period statements, for the portal and the customer's staff page: each
    period's first and last day, whether it has ended, the customer's latest answer, the
    company's reply to it, and whether the numbers changed since that answer."""
    answered: dict[dt.date, StatementResponse] = {}
    for answer in settlement_statements.responses(session, code):  # the latest first
        answered.setdefault(answer.period_start, answer)
    replied = settlement_statements.dispute_answers(session, [a.id for a in answered.values()])
    # An answer to numbers that have changed since is no answer to today's statement.
    now_shown = settlement_statements.period_statements(session, store, code)
    # A period's statement is to sign off once the period has ended; a running one is shown
    # with the day it ends (its numbers can still change).
    today = lang.today()
    periods: dict[dt.date, dt.date] = {}
    for p in statement["progress"]:
        periods[p.row.period_start] = max(
            periods.get(p.row.period_start, p.row.period_end), p.row.period_end
        )
    return [
        (
            start,
            end - dt.timedelta(days=1),
            end <= today,
            answered.get(start),
            replied.get(answered[start].id) if start in answered else None,
            start in answered
            and (
                start not in now_shown
                or not settlement_statements.answers_these_numbers(
                    answered[start], now_shown[start]
                )
            ),
        )
        for start, end in sorted(periods.items())
    ]


def readable(value: object) -> object:
    """Terms as a person reads them: without the empty defaults (nulls, empty lists and maps)
    or the version number (the header shows it)."""
    if isinstance(value, dict):
        kept = {
            key: readable(item)
            for key, item in value.items()
            if key != "version" and item not in (None, {}, [])
        }
        return {key: item for key, item in kept.items() if item not in ({}, [])}
    if isinstance(value, list):
        return [readable(item) for item in value]
    return value


def form_not_accepted(request: Request, errors: Sequence[Any]) -> Response:
    """A web request whose form or address did not pass validation, for a person: back to the
    page it came from, saying what was wrong in the reader's language (an HTMX request gets
    the sentence in place). A bad value in the address is a page that does not exist."""
    lang = _lang(request)
    if any(error["loc"] and error["loc"][0] == "path" for error in errors):
        return _not_found(request, _viewer(request))
    problems = lang._("; ").join(form_problem(lang, error) for error in errors)
    if request.headers.get("hx-request") and request.headers.get("hx-target"):
        # An element that shows the answer in place (the terms' live check). A form that swaps
        # the whole page (imports, accruals, audit runs) is sent back to its page instead,
        # which HTMX follows: a sentence alone would replace the page.
        return HTMLResponse(
            f'<div class="text-danger" data-testid="invalid">{escape(problems)}</div>'
        )
    if request.method == "GET":
        if not request.url.query:  # nothing to drop: going back would ask again
            return _not_found(request, _viewer(request))
        path = request.url.path  # the page, without the address's bad part
    else:
        back = urlsplit(request.headers.get("referer", ""))
        same_site = back.netloc in {"", request.url.netloc}
        path = (back.path or "/") if same_site else "/"
        if back.query and same_site:
            path += f"?{back.query}"
    return flash_redirect(path, invalid=problems)


# What pydantic's checks say, in the reader's language: by the error's type, with its context
# (``{expected}``, ``{gt}``...). A type not listed keeps pydantic's English.
CHECKS = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
    "decimal_parsing": "not a number",
    "decimal_type": "not a number",
    "int_parsing": "not a whole number",
    "int_type": "not a whole number",
    "date_parsing": "not a date (write 2026-01-01)",
    "date_from_datetime_parsing": "not a date (write 2026-01-01)",
    "date_type": "not a date (write 2026-01-01)",
    "string_type": "not text",
    "empty": "must not be empty",  # a string or a list that needs at least one
    "string_too_short": "needs at least {min_length} characters",
    "string_too_long": "allows at most {max_length} characters",
    "string_pattern_mismatch": "is not in the expected form",
    "too_short": "needs at least {min_length} items",
    "list_type": "not a list",
    "model_type": "not a mapping (key: value)",
    "dict_type": "not a mapping (key: value)",
    "enum": "must be one of {expected}",
    "literal_error": "must be one of {expected}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
}


def location(parts: Sequence[int | str]) -> str:
    """Where in the input, as Fanli's own rules write it: rebate.tiers[0].rate (a form's
    fields and a query's parameters by their names alone)."""
    text = ""
    for part in parts:
        if not text and part in {"body", "query"}:
            continue
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


# A form's fields as the page labels them, for a problem to name the field the reader saw
# ("金额: 不是数字", not "amount: ..."). A field not listed keeps its name.
FIELDS = {
    "amount": "Amount",
    "order_reference": "For order",
    "comment": "Comment",
    "reason": "Reason",
    "name": "Name",
    "code": "Code",
    "customer": "Customer",
    "agreement": "Agreement",
    "period_start": "Period from",
    "document_number": "Document number",
    "justification": "Justification (for a deviation)",
    "password": "Password",
    "user": "User",
    "owner": "Owner",
    "current": "Present password",
    "new": "New password (12 characters or more)",
    "repeat": "Repeat the new password",
    "days": "Valid for (days)",
    "period": "Period",
    "as_of": "As of",
    "totp": "Second-factor code (approvers, finance, administrators)",
    "role": "Roles",
    "kind": "Kind",
    "mapping": "Column mapping (optional)",
    "outcome": "Outcome",
    "bank_account": "Verified account",
}


def form_problem(lang: i18n.Lang, error: Any) -> str:
    """One problem pydantic found, in the reader's language: ``field: what is wrong``."""
    where = location(error["loc"])
    if where in FIELDS:  # a form's own field, by its label
        where = lang._(FIELDS[where])
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, TermsRuleError):  # one of the terms' rules: said with its values
        where = cause.path or where
        text = _said(lang, cause.problem)
    elif error["type"] in CHECKS:
        kind = error["type"]
        if kind in {"string_too_short", "too_short"} and context.get("min_length") == 1:
            kind = "empty"
        if lang.code.startswith("zh") and "expected" in context:  # 'a', 'b' or 'c' -> a、b、c
            expected = str(context["expected"]).replace(" or ", "、").replace(", ", "、")
            context = {**context, "expected": expected}
        text = lang._(CHECKS[kind], **{key: str(value) for key, value in context.items()})
    else:
        text = error["msg"].removeprefix("Value error, ")
    return lang._("{field}: {problem}", field=where, problem=text) if where else text


def not_found_page(request: Request) -> HTMLResponse:
    """The 404 page for an address no route serves."""
    return _not_found(request, _viewer(request))


# What a person sees when a page fails in a way nobody foresaw (the log holds the cause). The
# unit of work has rolled back, so nothing was half done. Plain HTML in both languages, with
# the site's style sheet: rendering it must not need the session or the database.
SERVER_ERROR_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>出错了 · Something went wrong · 返利 Fanli</title>
<link rel="stylesheet" href="/static/vendor/bootstrap.min.css"><link rel="icon" href="data:,">
</head><body><main class="container py-5" data-testid="server-error">
<h1 class="h3">出错了</h1>
<p>这一步没有完成，也没有保存任何改动。错误已记入服务器日志；请稍后再试，或将时间告知管理员。</p>
<h2 class="h5 mt-4">Something went wrong</h2>
<p>This step was not done, and nothing was changed. The error is in the server log; try again
later, or tell an administrator when it happened.</p>
<p><a class="btn btn-primary" href="/">返回首页 · Home</a></p>
</main></body></html>
"""
