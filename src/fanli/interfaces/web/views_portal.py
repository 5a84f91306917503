"""The customer portal's period statements: as a page and as a PDF, in the customer's
language, with its sign-off or dispute. The numbers are ``period_statement``'s, the same as
the staff see; the PDF is the same template, printed by WeasyPrint with a CJK font, so Chinese
names and amounts come out as text (extractable, searchable).

The staff read the same statement page, without the customer's form, at
``/customers/{code}/statements/{start}``: the numbers and the whole exchange about them (each
answer, whether it was to these numbers, and the company's replies).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fanli.config import company_now
from fanli.db.session import unit_of_work
from fanli.kit.errors import FanliError, NotFoundError
from fanli.ledger import overview
from fanli.settlements.models import StatementDecision
from fanli.settlements.statements import (
    answers_these_numbers,
    dispute_answers,
    may_answer,
    open_disputes,
    period_statement,
    respond,
    responses,
    running_until,
)
from fanli.users.actor import Role

from .views import (
    Viewer,
    _csrf_ok,
    _lang,
    _not_found,
    _page,
    _staff,
    _to_signin,
    _viewer,
    change_own_password,
    say,
    scope,
    sees_customer,
    templates,
)

router = APIRouter(include_in_schema=False)


def _customer(request: Request, csrf: str | None = None) -> tuple[Viewer | None, Response | None]:
    """The signed-in customer user; for a form (``csrf`` given), only if its token matches."""
    viewer = _viewer(request)
    if viewer is None:
        return None, _to_signin()
    if Role.CUSTOMER not in viewer.actor.roles or not viewer.actor.customer_code:
        return viewer, _not_found(request, viewer)
    if csrf is not None and not _csrf_ok(viewer, csrf):
        return viewer, HTMLResponse(
            _lang(request)._("This form has expired; reload the page."), 403
        )
    return viewer, None


def _statement_context(request: Request, code: str, start: dt.date) -> dict[str, Any]:
    with unit_of_work(request.app.state.read_sessions) as session:
        statement = period_statement(session, request.app.state.facts, code, start)
        answers = [r for r in responses(session, code) if r.period_start == start]
        replies = dispute_answers(session, [a.id for a in answers])
        allowed = {d.value for d in may_answer(session, statement, company_now())}
        in_units = overview.bases_in_units(session)  # a quantity basis is not money
    running = running_until(statement, _lang(request).today())
    if running is not None:  # a running period is disputed, not signed off (the service refuses)
        allowed.discard(StatementDecision.SIGNED_OFF.value)
    return {
        "statement": statement,
        "running_until": running,
        "one_day": dt.timedelta(
            days=1
        ),  # rebate periods end exclusive; statements show the last day
        # The whole exchange, oldest first: each answer, whether it was to these numbers or to
        # earlier ones, and the company's reply to a dispute.
        "thread": [
            (a, answers_these_numbers(a, statement), replies.get(a.id)) for a in reversed(answers)
        ],
        "allowed": allowed,
        "in_units": in_units,
        "current": [a for a in answers if answers_these_numbers(a, statement)],
        "replies": replies,
    }


@router.get("/portal/statements/{start}", response_model=None)
def statement(start: dt.date, request: Request) -> Response:
    viewer, refused = _customer(request)
    if refused or viewer is None:
        return refused or _to_signin()
    context = _statement_context(request, viewer.actor.customer_code or "", start)
    if not context["statement"].rows:
        return _not_found(request, viewer)
    return _page(request, "statement.html", viewer, **context)


@router.get("/customers/{code}/statements/{start}", response_model=None)
def staff_statement(code: str, start: dt.date, request: Request) -> Response:
    """A customer's period statement as the customer sees it, for the staff who may see the
    customer: the numbers and the whole exchange about them; an open dispute is answered from
    the inbox."""
    viewer, refused = _staff(request)
    if refused or viewer is None:  # PAGES: as GET /api/customers/{code}/statement
        return refused or _to_signin()
    with unit_of_work(request.app.state.read_sessions) as session:
        if not sees_customer(session, viewer, code):
            return _not_found(request, viewer)
        # The customer's latest word on this statement is a dispute nobody has answered yet.
        waiting = any(d.period_start == start for d in open_disputes(session, {code}))
    try:
        context = _statement_context(request, code, start)
    except NotFoundError:  # no such customer: no such page
        return _not_found(request, viewer)
    if not context["statement"].rows:
        return _not_found(request, viewer)
    return _page(
        request,
        "customer_statement.html",
        viewer,
        waiting_answer=waiting,
        answers_disputes=scope(viewer, "POST /api/disputes/{response_id}/answer") is not None,
        **context,
    )


@router.get("/portal/statements/{start}/pdf", response_model=None)
def statement_pdf(start: dt.date, request: Request) -> Response:
    viewer, refused = _customer(request)
    if refused or viewer is None:
        return refused or _to_signin()
    context = _statement_context(request, viewer.actor.customer_code or "", start)
    if not context["statement"].rows:
        return _not_found(request, viewer)
    lang = _lang(request)
    html = templates.get_template("statement_print.html").render(
        lang=lang, _=lang._, printed=company_now(), **context
    )
    from weasyprint import HTML  # type: ignore[import-untyped]  # noqa: PLC0415 - loads Pango

    pdf = HTML(string=html).write_pdf()
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="statement-{start}.pdf"'},
    )


@router.post("/portal/statements/{start}", response_model=None)
def answer(
    start: dt.date,
    request: Request,
    decision: Annotated[StatementDecision, Form()],
    comment: str = Form(default="", max_length=2000),
    csrf: str = Form(default=""),
) -> Response:
    viewer, refused = _customer(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    code = viewer.actor.customer_code or ""
    try:
        with unit_of_work(request.app.state.sessions) as session:
            respond(
                session,
                request.app.state.facts,
                code,
                start,
                decision=decision,
                comment=comment,
                actor=viewer.actor,
                now=company_now(),
            )
    except NotFoundError:  # no statement from that day: the page does not exist either
        return _not_found(request, viewer)
    except FanliError as error:
        context = _statement_context(request, code, start)
        return _page(
            request,
            "statement.html",
            viewer,
            error=say(_lang(request), error),
            comment=comment,
            **context,
        )
    return RedirectResponse(f"/portal/statements/{start}", status_code=303)


@router.post("/portal/password", response_model=None)
def change_password(
    request: Request,
    current: str = Form(default="", max_length=200),
    new: str = Form(default="", max_length=200),
    repeat: str = Form(default="", max_length=200),
    csrf: str = Form(default=""),
) -> Response:
    """The customer user's own password, given the present one (as a staff user's on /users)."""
    viewer, refused = _customer(request, csrf)
    if refused or viewer is None:
        return refused or _to_signin()
    return change_own_password(
        request, viewer, current=current, new=new, repeat=repeat, back="/portal"
    )
