"""``fanli audit``: the operator's signing key, checkpoints, verification and auditor bundles,
the periodic audit and its findings; ``fanli db grant``: the application role's privileges on
PostgreSQL.

The cron lines for regular checkpoints and audits are in docs/audit.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.orm import Session

from fanli.audit.trail import verify
from fanli.audit.verifier import key_id, load_public_key, read_checkpoints
from fanli.config import Settings, company_now
from fanli.db.roles import grant_application_role
from fanli.db.session import make_engine, reachable
from fanli.interfaces.cli.common import EXIT_REFUSED, fail, run, stdout
from fanli.interfaces.cli.money import AsOption
from fanli.interfaces.cli.store import db_app, in_store
from fanli.kit.errors import InputError
from fanli.oversight.audits import (
    Filters,
    assign_finding,
    dismiss_finding,
    report,
    resolve_finding,
    run_audit,
    write_report,
)
from fanli.oversight.checkpoints import (
    PUBLIC_KEY,
    SIGNING_KEY,
    append_to_file,
    create_key,
    load_signing_key,
    make_checkpoint,
)
from fanli.oversight.detectors import DETECTORS
from fanli.oversight.export import export_bundle
from fanli.oversight.models import FindingStatus
from fanli.sales.store import FactStore
from fanli.users.queries import actor as load_actor

audit_app = typer.Typer(
    help="The tamper-evident audit trail: checkpoints, verification, auditor bundles.",
    no_args_is_help=True,
)

CHECKPOINTS = "audit-checkpoints.jsonl"
KeyOption = Annotated[
    Path | None,
    typer.Option("--key", help=f"The Ed25519 signing key [default: DATA_DIR/{SIGNING_KEY}]."),
]


def _data_dir() -> Path:
    return Settings().data_dir


@audit_app.command("key")
def audit_key(
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Where to write it [default: DATA_DIR].")
    ] = None,
) -> None:
    """Make the operator's Ed25519 key pair for signing checkpoints (never replaces one)."""

    def step() -> str:
        private, public = create_key(folder or _data_dir())
        fingerprint = key_id(load_public_key(public.read_bytes()))
        return (
            f"signing key {private} (keep it away from the database's administrators)\n"
            f"public key  {public} (give it to auditors), fingerprint {fingerprint}"
        )

    stdout().print(Text(run(step)))


@audit_app.command("checkpoint")
def audit_checkpoint(
    actor: AsOption,
    key: KeyOption = None,
    file: Annotated[
        Path | None,
        typer.Option(help=f"The checkpoint file to append to [default: DATA_DIR/{CHECKPOINTS}]."),
    ] = None,
) -> None:
    """Sign a checkpoint of the whole trail, store it and append it to the checkpoint file."""
    target = file or _data_dir() / CHECKPOINTS

    def step(session: Session, _facts: FactStore) -> dict[str, object]:
        signing = load_signing_key(key or _data_dir() / SIGNING_KEY)
        return make_checkpoint(
            session, signing, actor=load_actor(session, actor), now=company_now()
        )

    checkpoint = in_store(step)
    run(lambda: append_to_file(target, checkpoint))
    stdout().print(
        Text(
            f"checkpoint of {checkpoint['tree_size']} events, tree head "
            f"{checkpoint['root_hash']}, appended to {target}"
        )
    )


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None, typer.Option(help="A checkpoint file kept outside the database.")
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(help=f"The operator's public key [default: DATA_DIR/{PUBLIC_KEY}]."),
    ] = None,
) -> None:
    """Recompute the whole chain (and every checkpoint's tree head); name the first event
    that does not match. Exit status 1 when something does not match."""

    def step(session: Session, _facts: FactStore) -> tuple[bool, str]:
        checkpoints, key = [], None
        if checkpoint is not None:
            try:
                checkpoints = read_checkpoints(checkpoint)
            except ValueError as error:
                raise InputError(str(error)) from None
            pem = public_key or _data_dir() / PUBLIC_KEY
            key = load_public_key(pem.read_bytes())
        result = verify(session, checkpoints, key)
        lines = []
        if result.broken:
            lines.append(f"first event that does not match: {result.broken}")
        lines.extend(result.problems)
        if result.holds:
            covered = (
                f"; {result.checkpoints_checked} checkpoints match, covering events 1 to "
                f"{result.covered}"
                if checkpoints
                else " (no checkpoint file given: a rewritten history would not show)"
            )
            lines.insert(0, f"the trail holds: {result.events} events recomputed{covered}")
        elif result.first_bad_event is not None and not result.broken:
            lines.insert(0, f"first event that does not match: event {result.first_bad_event}")
        return result.holds, "\n".join(lines)

    holds, report = in_store(step)
    if not holds:
        fail(report, EXIT_REFUSED)  # prints it, as every refusal is printed
        raise typer.Exit(EXIT_REFUSED)
    stdout().print(Text(report))


@audit_app.command("export")
def audit_export(
    period: Annotated[str, typer.Option(help="The accounting period, e.g. 2026-03.")],
    out: Annotated[Path, typer.Option(help="A new folder for the bundle.")],
    actor: AsOption,
    key: KeyOption = None,
) -> None:
    """Write the auditor's bundle for a period, with the standalone verifier."""

    def step(session: Session, _facts: FactStore) -> dict[str, object]:
        signing = load_signing_key(key or _data_dir() / SIGNING_KEY)
        return export_bundle(
            session, period, out, signing, actor=load_actor(session, actor), now=company_now()
        )

    manifest = in_store(step)
    body = manifest["body"]
    assert isinstance(body, dict)
    stdout().print(
        Text(
            f"bundle for {period} in {out}: {len(body['files'])} files, "
            f"{body['events_total']} event hashes; check it with: python {out}/verify.py {out}"
        )
    )


@audit_app.command("run")
def audit_run(
    period: Annotated[str, typer.Option(help="The accounting period, e.g. 2026-03.")],
    actor: AsOption,
    detector: Annotated[
        list[str] | None, typer.Option(help="Run only this detector; repeat. [default: all]")
    ] = None,
) -> None:
    """Run the detectors over a period and record their findings (again: no duplicates)."""

    def step(session: Session, facts: FactStore) -> str:
        run = run_audit(
            session,
            facts,
            period,
            actor=load_actor(session, actor),
            now=company_now(),
            detectors=detector or None,
        )
        return (
            f"audit run {run.id} of {period}: {run.found} findings, {run.opened} new "
            f"({len(run.detectors)} detectors)"
        )

    stdout().print(Text(in_store(step)))


@audit_app.command("detectors")
def audit_detectors() -> None:
    """List the detectors, who answers for their findings, and what they look for."""
    for detector in DETECTORS.values():
        stdout().print(Text(f"{detector.name:22} {detector.department:11} {detector.description}"))


@audit_app.command("findings")
def audit_findings(  # noqa: PLR0917 - one option per filter
    period: Annotated[str | None, typer.Option()] = None,
    detector: Annotated[str | None, typer.Option()] = None,
    department: Annotated[str | None, typer.Option()] = None,
    owner: Annotated[str | None, typer.Option()] = None,
    status: Annotated[FindingStatus | None, typer.Option()] = None,
    xlsx: Annotated[
        Path | None, typer.Option(help="Also write them, with counts, to this Excel file.")
    ] = None,
) -> None:
    """List findings, filtered; optionally as an Excel report."""
    filters = Filters(period, detector, department, owner, status.value if status else None)

    def step(session: Session, _facts: FactStore) -> list[str]:
        found = report(session, filters)
        if xlsx is not None:
            write_report(found, xlsx)
        return [
            f"{f.id:>5} {f.period} {f.status:9} {f.owner or '-':8} {f.detector:22} {f.summary}"
            for f in found
        ]

    lines = in_store(step)
    for line in lines:
        stdout().print(Text(line))
    stdout().print(Text(f"{len(lines)} findings" + (f", written to {xlsx}" if xlsx else "")))


@audit_app.command("assign")
def audit_assign(
    finding: int,
    to: Annotated[str, typer.Option(help="The user who answers for it.")],
    actor: AsOption,
) -> None:
    """Assign a finding to a user."""

    def step(session: Session, _facts: FactStore) -> str:
        done = assign_finding(
            session, finding, to, actor=load_actor(session, actor), now=company_now()
        )
        return f"finding {done.id} assigned to {done.owner}"

    stdout().print(Text(in_store(step)))


@audit_app.command("resolve")
def audit_resolve(
    finding: int,
    reason: Annotated[str, typer.Option(help="What was done about it.")],
    actor: AsOption,
) -> None:
    """Close an assigned finding as dealt with (its owner or an auditor)."""

    def step(session: Session, _facts: FactStore) -> str:
        done = resolve_finding(
            session, finding, reason=reason, actor=load_actor(session, actor), now=company_now()
        )
        return f"finding {done.id} resolved"

    stdout().print(Text(in_store(step)))


@audit_app.command("dismiss")
def audit_dismiss(
    finding: int,
    reason: Annotated[str, typer.Option(help="Why it is not an anomaly.")],
    actor: AsOption,
) -> None:
    """Close a finding as no anomaly (an auditor), with the reason."""

    def step(session: Session, _facts: FactStore) -> str:
        done = dismiss_finding(
            session, finding, reason=reason, actor=load_actor(session, actor), now=company_now()
        )
        return f"finding {done.id} dismissed"

    stdout().print(Text(in_store(step)))


@db_app.command("grant")
def db_grant(
    role: Annotated[str, typer.Argument(help="The PostgreSQL role the application signs in as.")],
) -> None:
    """Give the application's role what it needs and no more: it may read and add audit
    events and journal lines, never change or remove them (PostgreSQL only)."""

    def step() -> str:
        engine = reachable(make_engine(Settings().resolved_database_url))
        try:
            grant_application_role(engine, role)
        finally:
            engine.dispose()
        return f"{role} may now use the store; audit events and journal lines are append-only"

    stdout().print(Text(run(step)))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
