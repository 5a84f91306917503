"""The store commands end to end on SQLite: db, import, batch, agreement, accrue, period, gl."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from fanli.interfaces.cli.main import app
from fanli.interfaces.cli.store import _changes
from fanli.ledger import export


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FANLI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FANLI_DATABASE_URL", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result.exit_code, result.stdout, result.stderr

    return run


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_month_end_from_the_command_line(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli("accrue", "--as-of", "2026-03-31", "--as", "fay")
    assert code == 1
    assert "is not initialised: run `fanli db upgrade`" in err
    assert cli("db", "upgrade")[0] == 0
    people(cli)
    customers = _write(
        tmp_path / "customers.csv",
        "客户编码,客户名称,统一社会信用代码\nC1,上海华东食品贸易有限公司,91350100M000100Y43\n",
    )
    products = _write(tmp_path / "products.csv", "物料编码,物料名称,品类\nP1,矿泉水,饮料\n")
    sales = _write(
        tmp_path / "sales.csv",
        "客户编码,物料编码,开票日期,数量,不含税金额,单据编号,行号\n"
        "C1,P1,2026-01-10,10,10000.00,INV1,1\n",
    )
    terms = _write(
        tmp_path / "a.yaml",
        "id: A1\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "rebate: {tiers: [{from: 0, rate: 2}]}\n"
        f"contract: {{reference: HT-1, document_sha256: '{'0' * 64}'}}\n",
    )
    code, out, _ = cli("import", "customers", str(customers), "--as", "fay")
    assert (code, out.strip()) == (
        0,
        "customers.csv: batch 1, 1 row of customers (1 new, 0 updated)",
    )
    assert cli("import", "products", str(products), "--as", "fay")[0] == 0
    code, out, _ = cli("import", "sales", str(sales), "--as", "fay")
    assert (code, out.strip()) == (0, "sales.csv: batch 3, 1 row of sales (1 new, 0 updated)")
    code, out, _ = cli("import", "sales", str(sales), "--as", "fay")
    assert out.strip() == "sales.csv: already imported as batch 3; nothing added"
    ahead = _write(
        tmp_path / "ahead.csv",
        "客户编码,物料编码,开票日期,数量,不含税金额,单据编号,行号\n"
        "C1,P1,2099-01-10,1,1.00,INV9,1\n",
    )
    code, out, _ = cli("import", "sales", str(ahead), "--as", "fay")
    assert (code, out.splitlines()) == (
        0,
        [
            "ahead.csv: batch 4, 1 row of sales (1 new, 0 updated)",
            "note: 1 line is dated after today (the latest 2099-01-10); accrual runs count "
            "it as of their day",
        ],
    )
    assert "A1 v1 (draft, from 2026-01-01" in cli("agreement", "add", str(terms), "--as", "sam")[1]
    assert "needs approver x1" in cli("agreement", "submit", "A1", "--as", "sam")[1]
    code, out, _ = cli("agreement", "list")
    terms_hash = approve_hash(cli, "A1")
    assert (
        "A1 v1: active"
        in cli("agreement", "approve", "A1", "--terms-hash", terms_hash, "--as", "abe")[1]
    )
    code, out, _ = cli("accrue", "--as-of", "2026-03-31", "--as", "fay")
    assert code == 0
    assert "posted 1 journal line, liability change 200.00" in out
    assert "nothing was posted" in cli("accrue", "--as-of", "2026-03-31", "--as", "fay")[1]
    assert "2026-03 is closed" in cli("period", "close", "2026-03", "--as", "fay")[1]
    code, out, _ = cli(
        "gl", "export", "--period", "2026-03", "--out", str(tmp_path / "gl.xlsx"), "--as", "fay"
    )
    assert (code, " ".join(out.split())) == (
        0,
        "2 rows (each journal line of 2026-03 as its debit and its credit) written to "
        f"{tmp_path / 'gl.xlsx'}: CNY debit 200.00 = credit 200.00",
    )
    assert sorted(p.name for p in tmp_path.glob("*gl*")) == ["gl.xlsx"]
    # An export whose transaction fails to commit leaves no file the audit trail does not know
    # of: an earlier file at the path stays as it was.
    earlier = _write(tmp_path / "gl.csv", "an earlier export\n")

    def locked(*_args: object, **_kwargs: object) -> None:
        busy = sqlite3.OperationalError("database is locked")
        raise OperationalError("INSERT INTO audit_event", {}, busy)

    with monkeypatch.context() as patch:
        patch.setattr(export, "record", locked)
        code, _, err = cli(
            "gl", "export", "--period", "2026-03", "--out", str(earlier), "--as", "fay"
        )
    assert (code, "the database is busy" in err) == (1, True)
    assert sorted(p.name for p in tmp_path.glob("*gl*")) == ["gl.csv", "gl.xlsx"]
    assert earlier.read_text(encoding="utf-8") == "an earlier export\n"
    reason = "wrong file [see /ops] [/ops]"  # brackets are text, never Rich's markup
    code, out, _ = cli("batch", "void", "3", "--reason", reason, "--as", "fay")
    assert "batch 3 voided (1 line)" in out
    # the list says who voided the batch and why
    code, out, err = cli("batch", "list")
    assert (code, err) == (0, "")
    listed = [line for line in out.splitlines() if "sales.csv" in line]
    assert len(listed) == 1
    assert "voided" in listed[0]
    assert listed[0].rstrip(" │").endswith(f"fay: {reason}"), listed
    # The batch's sale was dated in the closed first quarter: its reversal is an adjustment.
    assert (
        "liability change -200.00, of which -200.00 adjusts closed periods"
        in cli("accrue", "--as-of", "2026-04-30", "--as", "fay")[1]
    )


POLICY = Path(__file__).parents[2] / "docs" / "examples" / "policy.yaml"


def people(cli) -> None:  # type: ignore[no-untyped-def]
    """An administrator, the users the approval path needs, and the example policy."""
    code, _out, err = cli("user", "create", "admin", "--name", "Admin", "--role", "administrator")
    assert (code, err) == (0, ""), err
    for user, role, limit in (
        ("sam", "sales", None),
        ("fay", "finance", None),
        ("fred", "finance", "600000"),
        ("abe", "approver", "1000000"),
        ("amy", "approver", "1000000"),
        ("cora", "compliance", None),
    ):
        extra = ("--limit", limit) if limit else ()
        code, _, err = cli(
            "user", "create", user, "--name", user, "--role", role, *extra, "--as", "admin"
        )
        assert code == 0, err
    assert "policy version 1" in cli("policy", "publish", str(POLICY), "--as", "cora")[1]


def approve_hash(cli, code: str) -> str:  # type: ignore[no-untyped-def]
    """The terms hash `fanli settlement waiting` shows an approver for agreement ``code``."""
    out = cli("settlement", "waiting", "--as", "abe")[1]
    line = next(line for line in out.splitlines() if line.startswith(f"agreement {code} "))
    return line.split("terms ")[1].rstrip(")")


def test_a_password_set_for_someone_else_is_theirs_to_change(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    # an amount is typed as digits and a point: "1e3" or "1_000" are refused, as by the API
    for typed in ("1e3", "1_000", " 5", "-1"):
        refused = cli("user", "create", "x", "--name", "X", "--role", "approver", "--limit", typed,
                      "--as", "admin")  # fmt: skip
        assert (refused[0], f"{typed!r} is not an amount" in refused[2]) == (2, True), refused
    own = cli("user", "password", "admin", "--password", "the admin's passphrase", "--as", "admin")
    assert (own[0], own[1].strip()) == (0, "password of admin set")
    theirs = cli("user", "password", "fay", "--password", "handed over to fay", "--as", "admin")
    assert (theirs[0], theirs[1].strip()) == (
        0,
        "password of fay set; fay chooses a new one at the first sign-in",
    )
    # long enough, with enough different characters, and in every list of leaked passwords
    for common in ("password1234", "1qaz2wsx3edc", "qwertyuiop12"):
        refused = cli("user", "password", "fay", "--password", common, "--as", "admin")
        assert refused[0] == 2
        assert (
            "this password is easy to guess (a common password, word or name, a keyboard "
            "pattern, or your own name): choose another"
        ) in refused[2]
    # the user's own name is as good as known: refused for Wang Xiaoming, fine for fay
    created = cli(
        "user", "create", "wxm", "--name", "Wang Xiaoming", "--role", "sales", "--as", "admin"
    )
    assert created[0] == 0, created[2]
    refused = cli("user", "password", "wxm", "--password", "wangxiaoming!!", "--as", "admin")
    assert (refused[0], "this password is easy to guess" in refused[2]) == (2, True)
    fine = cli("user", "password", "fay", "--password", "wangxiaoming!!", "--as", "admin")
    assert fine[0] == 0, fine[2]
    # longer than zxcvbn scores (72 characters): its first 72 are scored, and it is taken
    long_one = "Zq7!vR2#mK9@" * 7
    taken = cli("user", "password", "fay", "--password", long_one, "--as", "admin")
    assert (taken[0], taken[2]) == (0, "")
    common_start = "password1234" * 7
    refused = cli("user", "password", "fay", "--password", common_start, "--as", "admin")
    assert (refused[0], "this password is easy to guess" in refused[2]) == (2, True)


def test_a_bad_file_lists_its_rows_and_writes_the_report(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    customers = _write(
        tmp_path / "c.csv",
        "customer_id,name,credit_code\nC1,甲,91350100M000100Y44\nC2,,\nC3,丙,123\n",
    )
    report = tmp_path / "problems.csv"
    code, _, err = cli(
        "import", "customers", str(customers), "--report", str(report), "--as", "fay"
    )
    assert code == 2
    assert "3 problems; nothing was stored" in err
    assert "Traceback" not in err
    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert [line.split(",")[1:3] for line in lines[1:]] == [
        ["2", "credit_code"],
        ["3", "name"],
        ["4", "credit_code"],
    ]
    assert "customers" not in cli("batch", "list")[1]
    # A problem of the whole file is the report's one row.
    empty = _write(tmp_path / "empty.csv", "")
    code, _, err = cli("import", "sales", str(empty), "--report", str(report), "--as", "fay")
    assert code == 2
    assert f"report written to {report}" in err
    rows = report.read_text(encoding="utf-8-sig").splitlines()
    assert rows[0] == "file,row,field,reason"
    assert len(rows) == 2
    assert rows[1].startswith(f"{empty},1,,")
    assert rows[1].split(",", 3)[3] in err  # the same words as on the terminal


def test_days_and_periods_outside_the_calendar_are_refused_in_words(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    code, _, err = cli("accrue", "--as-of", "9999-12-31", "--as", "fay")
    assert code == 2
    assert "9999-12-31 is outside the days Fanli keeps (1900-01-01 to 9998-12-31)" in err
    for period, said in (
        ("26-03", "'26-03' is not an accounting period (YYYY-MM)"),
        ("9999-12", "'9999-12' is outside the days Fanli keeps (1900-01-01 to 9998-12-31)"),
    ):
        code, _, err = cli("period", "close", period, "--as", "fay")
        assert code == 2
        assert said in " ".join(err.split()), err
    listed = cli("period", "list")[1]
    # No period was made by a refusal.
    assert "20" not in listed
    assert "0026" not in listed


def test_an_output_never_overwrites_an_input_and_ids_stay_in_range(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    text = "line_id,customer_id\nL1,C1\n"
    sales = _write(tmp_path / "sales.csv", text)
    code, _, err = cli("import", "sales", str(sales), "--report", str(sales), "--as", "fay")
    assert code == 2
    assert f"--report names the input file {sales}: write to another file" in err
    code, _, err = cli(
        "import", "sales", str(sales), "--report", str(tmp_path / "r.txt"), "--as", "fay"
    )
    assert code == 2
    assert "the report is written as .csv or .xlsx" in err
    terms = _write(tmp_path / "a.yaml", "id: A1\n")
    code, _, err = cli("calc", "-a", str(terms), "-s", str(sales), "--out", str(sales))
    assert code == 2
    assert f"--out names the input file {sales}" in err
    assert sales.read_text(encoding="utf-8") == text  # untouched
    # A mistyped folder is refused, not created.
    missing = tmp_path / "exprots" / "gl.csv"
    for command in (
        ("gl", "export", "--period", "2026-03", "--out", str(missing), "--as", "fay"),
        ("import", "sales", str(sales), "--report", str(missing), "--as", "fay"),
    ):
        code, _, err = cli(*command)
        option = "--out" if "--out" in command else "--report"
        expected = f"field '{option}': there is no folder {missing.parent}; create it first"
        assert (code, expected in err) == (
            2,
            True,
        ), err
    assert not missing.parent.exists()
    code, _, err = cli("batch", "void", "99999999999999999999", "--reason", "x", "--as", "fay")
    assert code == 2
    assert "2147483647" in err
    code, _, err = cli("settlement", "pay", "1", "--account", "10" * 10, "--as", "fay")
    assert code == 2
    assert "2147483647" in err
    code, _, err = cli("period", "close", "\uff12\uff10\uff12\uff16-\uff10\uff13", "--as", "fay")
    assert code == 2
    assert "is not an accounting period (YYYY-MM)" in err  # full-width digits are not digits here


def test_a_database_url_that_cannot_be_used_is_said_in_one_line(  # type: ignore[no-untyped-def]
    cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    not_a_database = _write(tmp_path / "notes.db", "not a database\n")
    cases = (
        ("garbage", 2, "field 'FANLI_DATABASE_URL': is not a database URL"),
        (
            "mysql://fay:secret@db/fanli",
            2,
            "field 'FANLI_DATABASE_URL': mysql://fay:***@db/fanli: Fanli stores in SQLite",
        ),
        # a port nothing listens on: the driver's reason, on one line
        ("postgresql://fay:secret@db:port/fanli", 2, "field 'FANLI_DATABASE_URL': is not a"),
        (
            "postgresql+psycopg2://fay:secret@db/fanli",
            2,
            "field 'FANLI_DATABASE_URL': postgresql+psycopg2://fay:***@db/fanli: Fanli stores",
        ),
        (
            "postgresql://fay:secret@127.0.0.1:1/fanli",
            1,
            "the database (FANLI_DATABASE_URL) could not be used: connection failed",
        ),
        (
            f"sqlite:///{tmp_path / 'x.db'}?timeout=abc",
            2,
            f"field 'FANLI_DATABASE_URL': sqlite:///{tmp_path / 'x.db'}?timeout=abc: could not",
        ),
        (
            f"sqlite:///{not_a_database}",
            1,
            "the database (FANLI_DATABASE_URL) could not be used: file is not a database",
        ),
    )
    for url, exit_code, said in cases:
        monkeypatch.setenv("FANLI_DATABASE_URL", url)
        for command in (("db", "upgrade"), ("batch", "list")):
            code, _, err = cli(*command)
            assert (code, " ".join(err.split())[: len(said) + 7]) == (exit_code, "error: " + said)
            assert "Traceback" not in err
            assert "secret" not in err


def test_a_draft_that_submission_refused_is_edited_or_discarded(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    """A draft without a contract could not be submitted, nor replaced by `agreement add`:
    from the command line it was stuck for good."""
    cli("db", "upgrade")
    people(cli)
    bare = (
        "id: A1\nterm: {start: 2026-01-01, end: 2027-01-01}\n"
        "rebate: {tiers: [{from: 0, rate: 2}]}\n"
    )
    without = _write(tmp_path / "a.yaml", bare)
    signed = _write(
        tmp_path / "b.yaml",
        bare + f"contract: {{reference: HT-1, document_sha256: '{'0' * 64}'}}\n",
    )
    assert "A1 v1 (draft" in cli("agreement", "add", str(without), "--as", "sam")[1]
    code, _, err = cli("agreement", "submit", "A1", "--as", "sam")
    assert code != 0
    assert "the terms carry no contract" in err
    code, out, _ = cli("agreement", "edit", str(signed), "--as", "sam")
    assert (code, out.split(" (")[0]) == (0, "A1 v1")
    assert "needs approver x1" in cli("agreement", "submit", "A1", "--as", "sam")[1]
    # submitted: back to draft, then given up; a new version can then be added
    assert (
        "returned to draft" in cli("agreement", "reject", "A1", "--reason", "r", "--as", "abe")[1]
    )
    code, out, _ = cli("agreement", "discard", "A1", "--reason", "wrong rate", "--as", "sam")
    assert (code, out.strip()) == (0, "A1 v1: discarded")
    code, _, err = cli("agreement", "discard", "A1", "--reason", "again", "--as", "sam")
    assert (code, err.strip()) == (1, "error: agreement A1 has no draft or submitted version")
    assert "A1 v2 (draft" in cli("agreement", "add", str(signed), "--as", "sam")[1]


def test_a_runs_change_is_said_per_currency_when_it_has_several() -> None:
    """One amount for a run in CNY (or of nothing), each currency's otherwise: two never add."""
    assert _changes({}, Decimal("0"), Decimal("0")) == "liability change 0.00"
    assert _changes(
        {"CNY": (Decimal("200.0000"), Decimal("-20.0000"))},
        Decimal("200.0000"),
        Decimal("-20.0000"),
    ) == ("liability change 200.00, of which -20.00 adjusts closed periods")
    both = {
        "CNY": (Decimal("1210.0000"), Decimal("0")),
        "JPY": (Decimal("129.0000"), Decimal("-6.0000")),
    }
    assert _changes(both, Decimal("1339.0000"), Decimal("-6.0000")) == (
        "liability change CNY 1,210.00; JPY 129, of which -6 adjusts closed periods"
    )
