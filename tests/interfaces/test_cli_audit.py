"""``fanli audit`` from the command line: the key, checkpoints, verification against a checkpoint
file, a tampered trail named by its first broken event, and an auditor bundle that verifies
with its own script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from fanli.db.session import make_engine
from interfaces.test_cli_store import _write, approve_hash, cli, people
from store.tampering import unprotect

__all__ = ["cli"]  # the fixture, shared with the store commands' tests


def _month_end(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Q1 sales of C1 under a 2% agreement, accrued: accounting period 2026-03 exists."""
    files = {
        "customers": _write(
            tmp_path / "c.csv",
            "客户编码,客户名称,统一社会信用代码\nC1,上海华东食品贸易有限公司,91350100M000100Y43\n",
        ),
        "products": _write(tmp_path / "p.csv", "物料编码,物料名称,品类\nP1,矿泉水,饮料\n"),
        "sales": _write(
            tmp_path / "s.csv",
            "客户编码,物料编码,开票日期,数量,不含税金额,单据编号,行号\n"
            "C1,P1,2026-01-10,10,10000.00,INV1,1\n",
        ),
    }
    for kind, path in files.items():
        assert cli("import", kind, str(path), "--as", "fay")[0] == 0
    terms = _write(
        tmp_path / "a.yaml",
        "id: A1\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "rebate: {tiers: [{from: 0, rate: 2}]}\n"
        f"contract: {{reference: HT-1, document_sha256: '{'0' * 64}'}}\n",
    )
    cli("agreement", "add", str(terms), "--as", "sam")
    cli("agreement", "submit", "A1", "--as", "sam")
    cli("agreement", "approve", "A1", "--terms-hash", approve_hash(cli, "A1"), "--as", "abe")
    assert "liability change 200.00" in cli("accrue", "--as-of", "2026-03-31", "--as", "fay")[1]


def test_checkpoints_verification_and_a_bundle(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    cli("db", "upgrade")
    people(cli)
    _month_end(cli, tmp_path)

    code, out, _ = cli("audit", "verify")
    assert code == 0
    assert out.startswith("the trail holds: ")
    assert "(no checkpoint file given: a rewritten history would not show)" in out

    code, _, err = cli("audit", "checkpoint", "--as", "admin")
    assert code == 2
    assert f"{data / 'audit-signing-key.pem'}: not a readable Ed25519 private key" in err
    code, out, _ = cli("audit", "key")
    assert (code, "fingerprint" in out) == (0, True)
    assert (data / "audit-signing-key.pem").stat().st_mode & 0o777 == 0o600
    code, _, err = cli("audit", "key")
    assert (code, "exists already; keys are not replaced" in err) == (2, True)

    code, _, err = cli("audit", "checkpoint", "--as", "sam")
    assert (code, "sam may not make audit checkpoints" in err) == (1, True)
    code, out, _ = cli("audit", "checkpoint", "--as", "admin")
    assert code == 0, out
    size = int(out.split("checkpoint of ")[1].split()[0])
    checkpoints = data / "audit-checkpoints.jsonl"
    assert len(checkpoints.read_text("utf-8").splitlines()) == 1
    code, out, _ = cli("audit", "verify", "--checkpoint", str(checkpoints))
    assert (code, out.strip()) == (
        0,
        f"the trail holds: {size} events recomputed; 1 checkpoints match, covering events 1 "
        f"to {size}",
    )

    bundle = tmp_path / "bundle"
    ivan = ("user", "create", "ivan", "--name", "Ivan", "--role", "internal_auditor")
    assert cli(*ivan, "--as", "admin")[0] == 0
    code, out, err = cli(
        "audit", "export", "--period", "2026-03", "--out", str(bundle), "--as", "ivan"
    )
    assert code == 0, err
    assert f"check it with: python {bundle}/verify.py {bundle}" in out
    checked = subprocess.run(
        [sys.executable, "-I", str(bundle / "verify.py"), str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (checked.returncode, checked.stdout.splitlines()[-1]) == (0, "the bundle verifies")

    # Someone with the database file deletes the newest events: only a checkpoint can tell.
    engine = make_engine(f"sqlite:///{data / 'fanli.db'}")
    with engine.begin() as connection:
        unprotect(connection)
        connection.execute(text("DELETE FROM audit_event WHERE seq > :keep"), {"keep": size - 2})
    engine.dispose()
    code, _, err = cli("audit", "verify")  # the chain alone still holds
    assert code == 0
    code, _, err = cli("audit", "verify", "--checkpoint", str(checkpoints))
    assert code == 1
    assert f"first event that does not match: event {size - 1}" in err
    assert f"events {size - 1} to " in err


def test_grants_need_postgresql(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    code, _, err = cli("db", "grant", "fanli_app")
    assert (code, "roles and grants are PostgreSQL's" in err) == (2, True)


def test_the_periodic_audit_from_the_command_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    _month_end(cli, tmp_path)
    ivan = ("user", "create", "ivan", "--name", "Ivan", "--role", "internal_auditor")
    assert cli(*ivan, "--as", "admin")[0] == 0
    code, out, _ = cli("audit", "detectors")
    assert (code, len(out.splitlines())) == (0, 13)
    assert out.splitlines()[0].split()[:2] == ["approval_chain", "finance"]
    code, _, err = cli("audit", "run", "--period", "2026-03", "--as", "fay")
    assert (code, "fay may not run audits" in err) == (1, True)
    code, _, err = cli("audit", "run", "--period", "2026-03", "--detector", "nope", "--as", "ivan")
    assert (code, "unknown detector nope" in err) == (2, True)
    code, out, _ = cli("audit", "run", "--period", "2026-03", "--as", "ivan")
    assert (code, out.strip()) == (0, "audit run 1 of 2026-03: 0 findings, 0 new (13 detectors)")
    report = tmp_path / "findings.xlsx"
    code, out, _ = cli("audit", "findings", "--period", "2026-03", "--xlsx", str(report))
    assert (code, out.strip(), report.exists()) == (0, f"0 findings, written to {report}", True)
    code, _, err = cli("audit", "assign", "999", "--to", "fay", "--as", "ivan")
    assert (code, "there is no finding 999" in err) == (1, True)
