"""Commands for policy, approvals and money: ``user``, ``policy``, ``agreement submit|approve|
reject``, ``settlement``, ``balance``, ``customer``, ``dd``.

``--as USER`` names the acting user; the services check the user's roles. Commands that move
money take ``--idempotency-key`` (a retried command with the same key does nothing new).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.orm import Session

from fanli.agreements.service import draft_of
from fanli.compliance import review
from fanli.compliance.queries import policy_versions
from fanli.compliance.service import load_policy, publish
from fanli.config import company_now
from fanli.customers.models import DueDiligenceKind
from fanli.customers.service import add_due_diligence, register_account, verify_account
from fanli.interfaces.cli.common import (
    MAX_ID,
    RecordId,
    local_time,
    parse_date,
    run,
    stdout,
)
from fanli.interfaces.cli.store import agreement_app, in_store
from fanli.kit.errors import InputError
from fanli.kit.money import AMOUNT_TEXT, RoundingMode, quantize_money
from fanli.kit.periods import LAST_DAY
from fanli.sales.store import FactStore
from fanli.settlements import balance as balances
from fanli.settlements import service as settlements
from fanli.settlements.models import Settlement
from fanli.settlements.queries import approval_status, waiting_for
from fanli.users.actor import Role
from fanli.users.queries import actor as load_actor
from fanli.users.service import create_user, delegate, disable_user

user_app = typer.Typer(help="Create and disable users, grant delegations.", no_args_is_help=True)
policy_app = typer.Typer(help="Publish and read the rebate policy.", no_args_is_help=True)
settlement_app = typer.Typer(
    help="Propose, approve, reject, refresh and pay settlements.", no_args_is_help=True
)
customer_app = typer.Typer(help="Customers' bank accounts.", no_args_is_help=True)
dd_app = typer.Typer(help="Due diligence of customers.", no_args_is_help=True)
balance_app = typer.Typer(help="Rebate balance accounts (返利账户).", no_args_is_help=True)

AsOption = Annotated[str, typer.Option("--as", help="The acting user.")]
KeyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Required: a retry with the same key does nothing new."),
]


def _money(text: str, option: str) -> Decimal:
    if not AMOUNT_TEXT.fullmatch(text):
        raise InputError(
            f"{text!r} is not an amount: write digits, a point and up to four places (150.00)",
            field=option,
        )
    return Decimal(text)


def _date(text: str, option: str, *, last: dt.date = LAST_DAY) -> dt.date:
    day = parse_date(text, option, last=last)
    assert day is not None
    return day


def _amount(value: Decimal, currency: str = "CNY") -> str:
    """Money as the currency writes it (the database keeps four places)."""
    return format(quantize_money(value, currency, RoundingMode.HALF_UP), "f")


def _say(line: str) -> None:
    stdout().print(Text(line))


# ---- user -------------------------------------------------------------------------------------


@user_app.command("create")
def user_create(  # noqa: PLR0917 - Typer maps parameters to options
    code: str,
    name: Annotated[str, typer.Option(help="The person's name.")],
    role: Annotated[list[Role], typer.Option(help="A role; repeat for several.")],
    limit: Annotated[str | None, typer.Option(help="Approval limit (largest settlement).")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer users: their customer.")] = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="An administrator (omit for the first user).")
    ] = None,
) -> None:
    """Create a user. The very first user is an administrator created without --as."""
    amount = run(lambda: _money(limit, "--limit")) if limit is not None else None

    def step(session: Session, _facts: FactStore) -> str:
        who = load_actor(session, actor) if actor else None
        user = create_user(
            session,
            code,
            name=name,
            roles=role,
            approval_limit=amount,
            customer_code=customer,
            actor=who,
            now=company_now(),
        )
        return f"user {user.code} created: {', '.join(user.roles)}"

    _say(in_store(step))


@user_app.command("disable")
def user_disable(code: str, reason: Annotated[str, typer.Option()], actor: AsOption) -> None:
    """Disable a user: they can no longer act."""

    def step(session: Session, _facts: FactStore) -> str:
        disable_user(
            session, code, reason=reason, actor=load_actor(session, actor), now=company_now()
        )
        return f"user {code} disabled"

    _say(in_store(step))


@user_app.command("delegate")
def user_delegate(  # noqa: PLR0917 - Typer maps parameters to options
    delegator: str,
    to: Annotated[str, typer.Option(help="Who may approve on the delegator's behalf.")],
    start: Annotated[str, typer.Option("--from", help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--until", help="Day it ends, exclusive.")],
    reason: Annotated[str, typer.Option()],
    actor: AsOption,
) -> None:
    """Let another user approve for DELEGATOR between two dates."""
    first = run(lambda: _date(start, "--from"))
    last = run(lambda: _date(end, "--until", last=dt.date.max))  # 9999-12-31: no end

    def step(session: Session, _facts: FactStore) -> str:
        grant = delegate(
            session,
            delegator=delegator,
            delegate_to=to,
            valid_from=first,
            valid_to=last,
            reason=reason,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"delegation {grant.id}: {to} approves for {delegator} from {first} until {last}"

    _say(in_store(step))


# ---- policy -----------------------------------------------------------------------------------


@policy_app.command("publish")
def policy_publish(path: Path, actor: AsOption) -> None:
    """Publish a policy document (YAML or JSON) as the next version."""
    policy = run(lambda: load_policy(path))

    def step(session: Session, _facts: FactStore) -> str:
        version = publish(session, policy, actor=load_actor(session, actor), now=company_now())
        return (
            f"policy version {version.version} ({version.title}) in force from "
            f"{version.effective_from}, sha256 {version.sha256}"
        )

    _say(in_store(step))


@policy_app.command("list")
def policy_list() -> None:
    """Every published version of the policy."""

    def step(session: Session, _facts: FactStore) -> Table:
        table = Table("version", "title", "effective from", "published by", "sha256")
        for version in policy_versions(session):
            table.add_row(
                str(version.version),
                version.title,
                str(version.effective_from),
                version.published_by,
                version.sha256[:16],
            )
        return table

    stdout().print(in_store(step))


# ---- agreement approval -----------------------------------------------------------------------


@agreement_app.command("submit")
def agreement_submit(
    code: str,
    actor: AsOption,
    justification: Annotated[
        str | None, typer.Option(help="Why terms beyond the policy limits are needed.")
    ] = None,
) -> None:
    """Run the compliance checks on an agreement's draft and submit it for approval."""

    def step(session: Session, _facts: FactStore) -> str:
        version = draft_of(session, code)
        review.submit(
            session,
            version.id,
            justification=justification,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        assert version.review is not None
        steps = ", ".join(f"{s['role']} x{s['count']}" for s in version.review["steps"])
        return f"{code} v{version.version} submitted (terms {version.terms_hash}); needs {steps}"

    _say(in_store(step))


@agreement_app.command("approve")
def agreement_approve(
    code: str,
    terms_hash: Annotated[str, typer.Option(help="The terms hash you reviewed.")],
    actor: AsOption,
) -> None:
    """Approve an agreement's submitted version; the last approval makes it active."""

    def step(session: Session, _facts: FactStore) -> str:
        version = draft_of(session, code)
        review.approve(
            session,
            version.id,
            terms_hash=terms_hash,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"{code} v{version.version}: {version.status}"

    _say(in_store(step))


@agreement_app.command("reject")
def agreement_reject(code: str, reason: Annotated[str, typer.Option()], actor: AsOption) -> None:
    """Send an agreement's submitted version back to draft."""
    _back_to_draft(code, reason, actor, review.reject, "returned to draft")


@agreement_app.command("withdraw")
def agreement_withdraw(code: str, reason: Annotated[str, typer.Option()], actor: AsOption) -> None:
    """Take your submitted version back to draft, to change or discard it (compliance may
    withdraw anyone's)."""
    _back_to_draft(code, reason, actor, review.withdraw, "withdrawn to draft")


def _back_to_draft(
    code: str, reason: str, actor: str, service: Callable[..., Any], done: str
) -> None:
    """Send agreement ``code``'s submitted version back to draft through ``service`` (the
    review's reject or withdraw, which check who may)."""

    def step(session: Session, _facts: FactStore) -> str:
        version = draft_of(session, code)
        service(
            session, version.id, reason=reason, actor=load_actor(session, actor), now=company_now()
        )
        return f"{code} v{version.version} {done}"

    _say(in_store(step))


# ---- settlement -------------------------------------------------------------------------------


def _settlement_line(s: Settlement) -> str:
    return (
        f"settlement {s.id}: {s.agreement_code} / {s.beneficiary} / {s.period_start} to "
        f"{s.period_end}: {_amount(s.amount, s.currency)} {s.currency} ({s.form}), {s.status}"
    )


@settlement_app.command("propose")
def settlement_propose(
    agreement: str,
    beneficiary: str,
    period: Annotated[str, typer.Option(help="First day of the rebate period.")],
    actor: AsOption,
    key: KeyOption = None,
) -> None:
    """Propose the period-to-date settlement of one agreement x beneficiary x period."""
    start = run(lambda: _date(period, "--period"))

    def step(session: Session, facts: FactStore) -> str:
        settlement = settlements.propose(
            session,
            facts,
            agreement_code=agreement,
            beneficiary=beneficiary,
            period_start=start,
            idempotency_key=key,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        steps = ", ".join(f"{s['role']} x{s['count']}" for s in settlement.steps)
        return f"{_settlement_line(settlement)}; needs {steps}"

    _say(in_store(step))


@settlement_app.command("approve")
def settlement_approve(settlement_id: RecordId, actor: AsOption, key: KeyOption = None) -> None:
    """Approve one step of a settlement."""

    def step(session: Session, facts: FactStore) -> str:
        settlement = settlements.approve(
            session,
            facts,
            settlement_id,
            idempotency_key=key,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return _settlement_line(settlement)

    _say(in_store(step))


@settlement_app.command("reject")
def settlement_reject(
    settlement_id: RecordId, reason: Annotated[str, typer.Option()], actor: AsOption
) -> None:
    """Reject a settlement, with the reason."""

    def step(session: Session, _facts: FactStore) -> str:
        settlement = settlements.reject(
            session,
            settlement_id,
            reason=reason,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return _settlement_line(settlement)

    _say(in_store(step))


@settlement_app.command("refresh")
def settlement_refresh(settlement_id: RecordId, actor: AsOption) -> None:
    """Recompute a settlement whose inputs changed; it needs approving again."""

    def step(session: Session, facts: FactStore) -> str:
        settlement = settlements.refresh(
            session, facts, settlement_id, actor=load_actor(session, actor), now=company_now()
        )
        return _settlement_line(settlement)

    _say(in_store(step))


@settlement_app.command("pay")
def settlement_pay(  # noqa: PLR0917 - Typer maps parameters to options
    settlement_id: RecordId,
    actor: AsOption,
    key: KeyOption = None,
    document: Annotated[
        str | None, typer.Option(help="Credit note or red-letter invoice number.")
    ] = None,
    invoice: Annotated[
        list[str] | None, typer.Option(help="An original invoice line it corrects; repeat.")
    ] = None,
    account: Annotated[
        int | None, typer.Option(help="Bank account id (transfers).", min=1, max=MAX_ID)
    ] = None,
) -> None:
    """Pay an approved settlement in the form its agreement names."""

    def step(session: Session, facts: FactStore) -> str:
        payout = settlements.pay(
            session,
            facts,
            settlement_id,
            idempotency_key=key,
            document_number=document,
            original_invoices=invoice or [],
            bank_account_id=account,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return (
            f"settlement {settlement_id} paid: payout {payout.id}, {_amount(payout.amount)} as "
            f"{payout.form}, journal entry {payout.journal_entry_id}"
        )

    _say(in_store(step))


@settlement_app.command("status")
def settlement_status(settlement_id: RecordId) -> None:
    """A settlement, its approvals and what it still needs."""

    def step(session: Session, _facts: FactStore) -> list[str]:
        status = approval_status(session, settlement_id)
        lines = [_settlement_line(status.settlement)]
        lines += [
            f"  approved by {a.approver}"
            + (f" for {a.principal}" if a.principal != a.approver else "")
            + f" as {a.role} at {local_time(a.approved_at)}"
            for a in status.approvals
        ]
        if status.missing:
            lines.append("  still needs: " + ", ".join(status.missing))
        if status.payout:
            lines.append(f"  payout {status.payout.id}: {status.payout.form}")
        return lines

    for line in in_store(step):
        _say(line)


@settlement_app.command("waiting")
def settlement_waiting(actor: AsOption) -> None:
    """What waits for your approval."""

    def step(session: Session, _facts: FactStore) -> list[str]:
        found = waiting_for(session, load_actor(session, actor), company_now().date())
        lines = [_settlement_line(s) for s in found.settlements]
        lines += [
            f"agreement {code} v{v.version} (terms {v.terms_hash})"
            for code, v in found.agreement_versions
        ]
        return lines or ["nothing waits for you"]

    for line in in_store(step):
        _say(line)


# ---- balance ----------------------------------------------------------------------------------


@balance_app.command("show")
def balance_show(customer: str) -> None:
    """A customer's rebate balance and its credits."""

    def step(session: Session, _facts: FactStore) -> tuple[str, Table]:
        found = balances.balance(session, customer, company_now().date())
        table = Table("credit", "amount", "valid until", "status")
        for credit in found.credits:
            table.add_row(
                str(credit.id), _amount(credit.amount), str(credit.valid_until), credit.status
            )
        head = f"{customer}: available {_amount(found.available)}, locked {_amount(found.locked)}"
        return head, table

    head, table = in_store(step)
    _say(head)
    stdout().print(table)


@balance_app.command("use")
def balance_use(
    customer: str,
    amount: Annotated[str, typer.Option()],
    order: Annotated[str, typer.Option(help="The order the balance pays.")],
    actor: AsOption,
    key: KeyOption = None,
) -> None:
    """Request to spend balance on an order (locked until approved)."""
    value = run(lambda: _money(amount, "--amount"))

    def step(session: Session, _facts: FactStore) -> str:
        use = balances.request_use(
            session,
            customer,
            amount=value,
            order_reference=order,
            idempotency_key=key,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"balance use {use.id}: {_amount(use.amount)} on {use.order_reference}, {use.status}"

    _say(in_store(step))


@balance_app.command("decide")
def balance_decide(
    use_id: RecordId,
    actor: AsOption,
    approve: Annotated[bool, typer.Option("--approve/--reject")] = True,
    reason: Annotated[str, typer.Option()] = "",
    key: KeyOption = None,
) -> None:
    """Approve or reject a balance use."""

    def step(session: Session, _facts: FactStore) -> str:
        use = balances.decide_use(
            session,
            use_id,
            approve=approve,
            reason=reason,
            idempotency_key=key,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"balance use {use.id}: {use.status}"

    _say(in_store(step))


@balance_app.command("expire")
def balance_expire(
    actor: AsOption, as_of: Annotated[str | None, typer.Option("--as-of")] = None
) -> None:
    """Expire the credits whose validity has ended and release them."""
    day = run(lambda: parse_date(as_of, "--as-of"))

    def step(session: Session, _facts: FactStore) -> str:
        done = balances.expire_credits(
            session,
            as_of=day or company_now().date(),
            actor=load_actor(session, actor),
            now=company_now(),
        )
        total = sum((c.amount for c in done), Decimal(0))
        return f"{len(done)} credits expired, {_amount(total)} released"

    _say(in_store(step))


# ---- customer accounts and due diligence -------------------------------------------------------


@customer_app.command("add-account")
def customer_add_account(  # noqa: PLR0917 - Typer maps parameters to options
    customer: str,
    bank: Annotated[str, typer.Option()],
    number: Annotated[str, typer.Option()],
    holder: Annotated[str, typer.Option(help="The account holder, as the bank has it.")],
    actor: AsOption,
    country: Annotated[str, typer.Option()] = "CN",
) -> None:
    """Register a customer's bank account (a second person must verify it)."""

    def step(session: Session, _facts: FactStore) -> str:
        account = register_account(
            session,
            customer,
            bank_name=bank,
            account_number=number,
            holder_name=holder,
            country=country,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"bank account {account.id} of {customer} registered; it needs verifying"

    _say(in_store(step))


@customer_app.command("verify-account")
def customer_verify_account(account_id: RecordId, actor: AsOption) -> None:
    """Verify a registered bank account (not by whoever registered it)."""

    def step(session: Session, _facts: FactStore) -> str:
        verify_account(session, account_id, actor=load_actor(session, actor), now=company_now())
        return f"bank account {account_id} verified"

    _say(in_store(step))


@dd_app.command("add")
def dd_add(  # noqa: PLR0917 - Typer maps parameters to options
    customer: str,
    kind: Annotated[DueDiligenceKind, typer.Option()],
    reference: Annotated[str, typer.Option()],
    checked: Annotated[str, typer.Option(help="Day of the check.")],
    expires: Annotated[str, typer.Option(help="Day it lapses.")],
    actor: AsOption,
    failed: Annotated[bool, typer.Option(help="Record a failed check.")] = False,
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Record a due-diligence check of a customer."""
    first = run(lambda: _date(checked, "--checked"))
    last = run(lambda: _date(expires, "--expires", last=dt.date.max))  # 9999-12-31: never

    def step(session: Session, _facts: FactStore) -> str:
        entry = add_due_diligence(
            session,
            customer,
            kind=kind,
            passed=not failed,
            reference=reference,
            checked_on=first,
            expires_on=last,
            note=note,
            actor=load_actor(session, actor),
            now=company_now(),
        )
        return f"{customer}: {entry.kind} {'passed' if entry.passed else 'failed'} until {last}"

    _say(in_store(step))


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(policy_app, name="policy")
    app.add_typer(settlement_app, name="settlement")
    app.add_typer(balance_app, name="balance")
    app.add_typer(customer_app, name="customer")
    app.add_typer(dd_app, name="dd")
