"""Commands for sign-in and the HTTP API: ``user password|totp|token``, ``customer assign``,
``serve``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.orm import Session

from fanli.config import company_now
from fanli.customers.service import assign
from fanli.interfaces.cli.common import local_time, run, stdout
from fanli.interfaces.cli.money import AsOption, customer_app, user_app
from fanli.interfaces.cli.store import in_store
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
    """Set a user's password (at least 12 characters); their sessions end. Set for someone
    else, it must be changed at their first sign-in."""

    def step(session: Session, _facts: FactStore) -> str:
        handed_over = set_password(
            session, code, password, actor=load_actor(session, actor), now=company_now()
        )
        if handed_over:
            return f"password of {code} set; {code} chooses a new one at the first sign-in"
        return f"password of {code} set"

    stdout().print(Text(in_store(step)))


@user_app.command("totp")
def user_totp(code: str, actor: AsOption) -> None:
    """Enrol a second factor: prints the secret and its otpauth:// address, once."""

    def step(session: Session, _facts: FactStore) -> str:
        secret = enrol_second_factor(
            session, code, actor=load_actor(session, actor), now=company_now()
        )
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
            now=company_now(),
        )
        until = local_time(row.expires_at, "%Y-%m-%d")
        return f"token {row.id} ({', '.join(row.roles)}, until {until}):\n{token}"

    stdout().print(Text(in_store(step)))


@customer_app.command("assign")
def customer_assign(
    customer: str,
    to: Annotated[str, typer.Option(help="The sales user who looks after the customer.")],
    actor: AsOption,
) -> None:
    """Assign a customer to a sales user (they see its data, and only their customers')."""

    def step(session: Session, _facts: FactStore) -> str:
        assign(session, customer, to, actor=load_actor(session, actor), now=company_now())
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


def web_demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Build the demo company into the data directory (once), then serve the web application
    and print the demo sign-ins."""
    import uvicorn  # noqa: PLC0415 - only the server commands need it

    from fanli.config import Settings  # noqa: PLC0415
    from fanli.db.migrate import upgrade  # noqa: PLC0415
    from fanli.db.session import make_engine, reachable, session_factory  # noqa: PLC0415
    from fanli.demo.store import DEMO_PASSWORD, USERS, build, is_built  # noqa: PLC0415
    from fanli.interfaces.api.app import create_app  # noqa: PLC0415

    settings = Settings()
    console = stdout()
    engine = run(lambda: reachable(make_engine(settings.resolved_database_url)))
    run(lambda: upgrade(engine))
    sessions = session_factory(engine)
    secrets_file = settings.data_dir / "demo-second-factor.txt"
    if not is_built(sessions):
        console.print(Text("building the demo company (a minute, once)..."))
        built = run(
            lambda: build(sessions, FactStore(settings.facts_dir), settings.data_dir / "demo")
        )
        secrets_file.write_text(
            "".join(f"{user} {secret}\n" for user, secret in built.secrets.items()), "utf-8"
        )
        for note in built.notes:
            console.print(Text(f"  {note}"))
    engine.dispose()
    console.print(Text(f"Fanli on http://{host}:{port}/  (API: /api/docs)"))
    console.print(Text(f"demo sign-ins, password {DEMO_PASSWORD}:"))
    secrets = (
        dict(line.split() for line in secrets_file.read_text("utf-8").splitlines() if line.strip())
        if secrets_file.exists()
        else {}
    )
    for code, name, roles, _limit, _customer in USERS:
        second = f"  second factor (TOTP secret) {secrets[code]}" if code in secrets else ""
        console.print(Text(f"  {code:10} {', '.join(roles):18} {name}{second}"))
    app = run(lambda: create_app(settings))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("web-demo")(web_demo)
