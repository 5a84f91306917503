"""Commands for sign-in and the HTTP API: ``user password|totp|token``, ``customer assign``,
``serve``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.orm import Session

from fanli.customers.service import assign
from fanli.interfaces.cli.common import run, stdout
from fanli.interfaces.cli.money import AsOption, customer_app, user_app
from fanli.interfaces.cli.store import in_store, now_utc
from fanli.sales.store import FactStore
from fanli.users.actor import Role
from fanli.users.auth import create_token, enrol_second_factor, provisioning_uri, set_password
from fanli.users.queries import actor as load_actor


@user_app.command("password")
def user_password(
    code: str,
    actor: AsOption,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set a user's password (at least 12 characters); their sessions end."""

    def step(session: Session, _facts: FactStore) -> str:
        set_password(session, code, password, actor=load_actor(session, actor), now=now_utc())
        return f"password of {code} set"

    stdout().print(Text(in_store(step)))


@user_app.command("totp")
def user_totp(code: str, actor: AsOption) -> None:
    """Enrol a second factor: prints the secret and its otpauth:// address, once."""

    def step(session: Session, _facts: FactStore) -> str:
        secret = enrol_second_factor(session, code, actor=load_actor(session, actor), now=now_utc())
        return f"secret {secret}\n{provisioning_uri(secret, code)}"

    stdout().print(Text(in_store(step)))


@user_app.command("token")
def user_token(
    actor: AsOption,
    name: Annotated[str, typer.Option(help="What uses the token (an ERP, a script).")],
    role: Annotated[list[Role], typer.Option(help="A role the token carries; repeat.")],
    days: Annotated[int, typer.Option(help="Days until it expires (at most 366).")] = 90,
) -> None:
    """Create an API token for yourself, carrying some of your roles; printed once."""

    def step(session: Session, _facts: FactStore) -> str:
        token, row = create_token(
            session,
            name=name,
            roles=role,
            days=days,
            actor=load_actor(session, actor),
            now=now_utc(),
        )
        return f"token {row.id} ({', '.join(row.roles)}, until {row.expires_at:%Y-%m-%d}):\n{token}"

    stdout().print(Text(in_store(step)))


@customer_app.command("assign")
def customer_assign(
    customer: str,
    to: Annotated[str, typer.Option(help="The sales user who looks after the customer.")],
    actor: AsOption,
) -> None:
    """Assign a customer to a sales user (they see its data, and only their customers')."""

    def step(session: Session, _facts: FactStore) -> str:
        assign(session, customer, to, actor=load_actor(session, actor), now=now_utc())
        return f"{customer} assigned to {to}"

    stdout().print(Text(in_store(step)))


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the HTTP API (OpenAPI at /api/openapi.json, documentation at /api/docs)."""
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from fanli.interfaces.api.app import create_app  # noqa: PLC0415

    app = run(create_app)
    stdout().print(Text(f"Fanli API on http://{host}:{port}/api/docs"))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
