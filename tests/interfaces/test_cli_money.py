"""The money path from the command line: agreement approval, due diligence, a settlement
proposed, approved and paid by bank transfer to a verified account, with clear refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from interfaces.test_cli_store import _write, approve_hash, cli, people

__all__ = ["cli"]  # the fixture, shared with the store commands' tests

KINDS = ("business_licence", "registration_verified", "beneficial_owners", "blacklist_check")


def test_propose_approve_and_pay_by_transfer(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    _write(
        tmp_path / "c.csv",
        "客户编码,客户名称,统一社会信用代码,客户分类\nC1,上海华东食品贸易有限公司,91350100M000100Y43,批发\n",
    )
    _write(tmp_path / "p.csv", "物料编码,物料名称,品类\nP1,矿泉水,饮料\n")
    _write(
        tmp_path / "s.csv",
        "客户编码,物料编码,开票日期,数量,不含税金额,单据编号,行号\nC1,P1,2026-02-10,10,30000.00,INV1,1\n",
    )
    _write(
        tmp_path / "a.yaml",
        "id: A1\nterm: {start: 2026-01-01, end: 2027-01-01}\nparties: {counterparty: C1}\n"
        "rebate: {tiers: [{from: 0, rate: 2}]}\nsettlement: {form: bank_transfer}\n"
        f"contract: {{reference: HT-7, document_sha256: '{'a' * 64}'}}\n",
    )
    for kind, name in (("customers", "c.csv"), ("products", "p.csv"), ("sales", "s.csv")):
        assert cli("import", kind, str(tmp_path / name), "--as", "fay")[0] == 0
    cli("agreement", "add", str(tmp_path / "a.yaml"), "--as", "sam")
    cli("agreement", "submit", "A1", "--as", "sam")
    code, _, err = cli("agreement", "approve", "A1", "--terms-hash", "0" * 64, "--as", "abe")
    assert (code, "is not that of the terms submitted now" in err) == (1, True)
    terms_hash = approve_hash(cli, "A1")
    assert cli("agreement", "approve", "A1", "--terms-hash", terms_hash, "--as", "abe")[0] == 0
    assert "liability change 600.00" in cli("accrue", "--as-of", "2026-03-31", "--as", "fay")[1]

    propose = ("settlement", "propose", "A1", "C1", "--period", "2026-01-01", "--as", "fay")
    code, _, err = cli(*propose)
    assert (code, "needs an idempotency key" in err) == (1, True)
    code, _, err = cli(*propose, "--idempotency-key", "p-1")
    assert code == 1
    assert "due diligence of C1 is not current: beneficial_owners: never recorded" in err
    today = dt.datetime.now(dt.UTC).date()
    for kind in KINDS:
        code, out, err = cli(
            "dd",
            "add",
            "C1",
            "--kind",
            kind,
            "--reference",
            f"{kind}-ref",
            "--checked",
            str(today - dt.timedelta(days=1)),
            "--expires",
            str(today + dt.timedelta(days=365)),
            "--as",
            "cora",
        )
        assert code == 0, err
    code, out, _ = cli(*propose, "--idempotency-key", "p-2")
    assert out.strip() == (
        "settlement 1: A1 / C1 / 2026-01-01 to 2026-04-01: 600.00 CNY (bank_transfer), "
        "proposed; needs approver x1"
    )
    assert cli(*propose, "--idempotency-key", "p-2")[1] == out  # a retry: the same settlement
    code, _, err = cli("settlement", "approve", "1", "--as", "fay", "--idempotency-key", "a-0")
    assert (code, "fay proposed settlement 1 and cannot approve it" in err) == (1, True)
    assert "settlement 1" in cli("settlement", "waiting", "--as", "amy")[1]
    code, out, _ = cli("settlement", "approve", "1", "--as", "amy", "--idempotency-key", "a-1")
    assert out.strip().endswith("approved")

    code, out, _ = cli(
        "customer",
        "add-account",
        "C1",
        "--bank",
        "招商银行",
        "--number",
        "6214 8301 0000 0001",
        "--holder",
        "上海华东食品贸易有限公司",
        "--as",
        "fay",
    )
    assert out.strip() == "bank account 1 of C1 registered; it needs verifying"
    pay = ("settlement", "pay", "1", "--account", "1", "--as", "fay")
    code, _, err = cli(*pay, "--idempotency-key", "pay-1")
    assert (code, "has not been verified by a second person" in err) == (1, True)
    code, _, err = cli("customer", "verify-account", "1", "--as", "fay")
    assert (code, "a second person must verify it" in err) == (1, True)
    assert cli("customer", "verify-account", "1", "--as", "fred")[0] == 0
    code, out, _ = cli(*pay, "--idempotency-key", "pay-2")
    assert out.strip() == ("settlement 1 paid: payout 1, 600.00 as bank_transfer, journal entry 2")
    status = cli("settlement", "status", "1")[1]
    assert "approved by amy as approver" in status
    assert "payout 1: bank_transfer" in status
    code, out, _ = cli(
        "gl",
        "export",
        "--period",
        today.strftime("%Y-%m"),
        "--out",
        str(tmp_path / "gl.csv"),
        "--as",
        "fay",
    )
    assert (code, "debit 600.00 = credit 600.00" in out) == (0, True)


def test_a_submitter_withdraws_a_version_to_change_or_discard_it(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    _write(
        tmp_path / "c.csv",
        "客户编码,客户名称,统一社会信用代码,客户分类\nC1,上海华东食品贸易有限公司,91350100M000100Y43,批发\n",
    )
    assert cli("import", "customers", str(tmp_path / "c.csv"), "--as", "fay")[0] == 0
    _write(
        tmp_path / "a.yaml",
        "id: A1\nterm: {start: 2026-01-01, end: 2027-01-01}\nparties: {counterparty: C1}\n"
        "rebate: {tiers: [{from: 0, rate: 2}]}\nsettlement: {form: bank_transfer}\n"
        f"contract: {{reference: HT-7, document_sha256: '{'a' * 64}'}}\n",
    )
    cli("agreement", "add", str(tmp_path / "a.yaml"), "--as", "sam")
    cli("agreement", "submit", "A1", "--as", "sam")
    code, _, err = cli("agreement", "discard", "A1", "--reason", "not now", "--as", "sam")
    assert (code, "is submitted, not a draft" in err) == (1, True)
    # Only the submitter (or compliance) takes it back.
    code, _, err = cli("agreement", "withdraw", "A1", "--reason", "not now", "--as", "fay")
    assert (code, "withdraw another user's submission" in err) == (1, True)
    assert cli("agreement", "withdraw", "A1", "--reason", "rate typo", "--as", "sam")[1] == (
        "A1 v1 withdrawn to draft\n"
    )
    code, out, _ = cli("agreement", "discard", "A1", "--reason", "not now", "--as", "sam")
    assert (code, "discarded" in out) == (0, True)


def test_a_void_says_which_returns_it_leaves_without_their_sale(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "upgrade")
    people(cli)
    _write(
        tmp_path / "c.csv",
        "客户编码,客户名称,统一社会信用代码\nC1,上海华东食品贸易有限公司,91350100M000100Y43\n",
    )
    _write(tmp_path / "p.csv", "物料编码,物料名称,品类\nP1,矿泉水,饮料\n")
    header = "line_id,customer_id,product_id,invoice_date,quantity,net_amount"
    _write(tmp_path / "s.csv", f"{header}\nL1,C1,P1,2026-01-10,2,200.00\n")
    _write(tmp_path / "r.csv", f"{header},原发票行\nR1,C1,P1,2026-01-20,-1,-100.00,L1\n")
    for kind, name in (("customers", "c.csv"), ("products", "p.csv"), ("sales", "s.csv")):
        assert cli("import", kind, str(tmp_path / name), "--as", "fay")[0] == 0
    assert cli("import", "sales", str(tmp_path / "r.csv"), "--as", "fay")[0] == 0
    code, out, err = cli("batch", "void", "3", "--reason", "wrong file", "--as", "fay")
    assert (code, out) == (0, "batch 3 voided (1 line); run `fanli accrue`\n")
    assert " ".join(err.split()) == (
        "note: 1 return in other batches names lines of batch 3 (batch 4: R1); they keep "
        "reducing rebates until those sales are imported again or the returns are voided too"
    )
