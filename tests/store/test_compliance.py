"""Policy, agreement submission and approval, users and delegations: every blocked case gives
its reason and leaves the store as it was."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fanli.agreements.models import AgreementApproval, AgreementVersion
from fanli.agreements.service import AgreementError, activate_version, add_version, edit_draft
from fanli.audit.models import AuditEvent
from fanli.compliance import review
from fanli.compliance.policy import Policy
from fanli.compliance.queries import NoPolicyError, policy_in_force, policy_versions
from fanli.compliance.service import PolicyError, load_policy, publish
from fanli.customers.credit_code import check_character
from fanli.kit.errors import InputError
from fanli.ledger.periods import close_period
from fanli.ledger.service import accrue
from fanli.sales.service import import_customers, void_batch
from fanli.users.actor import PermissionDeniedError
from fanli.users.models import User
from fanli.users.queries import actor
from fanli.users.service import UserError, create_user, delegate, disable_user
from store.builders import POLICY, customers_file, people, percent_agreement, staff
from store.conftest import NOW, Store

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "policy.yaml"


def _draft(store: Store, tmp_path: Path, **terms: Any) -> tuple[dict[str, Any], int]:
    with store.work() as session:
        # an import comes first in its transaction (the import lock before the audit chain's)
        import_customers(
            session, store.facts, customers_file(tmp_path), actor=staff("ann"), now=NOW
        )
        who = people(session, NOW)
        version = add_version(session, percent_agreement(**terms), actor=staff("sam"), now=NOW)
        return who, version.id


def _state(store: Store, version_id: int) -> tuple[Any, ...]:
    with store.work() as session:
        version = session.get(AgreementVersion, version_id)
        assert version is not None
        return (
            version.status,
            version.submission,
            version.terms_hash,
            session.scalar(select(func.count()).select_from(AgreementApproval)),
            session.scalar(select(func.count()).select_from(AuditEvent)),
        )


def _submit(store: Store, version_id: int, who: Any, justification: str | None = None) -> None:
    with store.work() as session:
        review.submit(session, version_id, justification=justification, actor=who, now=NOW)


def _approve(store: Store, version_id: int, who: Any, terms_hash: str | None = None) -> str:
    with store.work() as session:
        version = session.get(AgreementVersion, version_id)
        assert version is not None
        return review.approve(
            session, version_id, terms_hash=terms_hash or version.terms_hash, actor=who, now=NOW
        ).status


def test_submit_then_approve_activates(store: Store, tmp_path: Path) -> None:
    who, version_id = _draft(store, tmp_path, parties={"counterparty": "C1"})
    _submit(store, version_id, who["sam"])
    with pytest.raises(PermissionDeniedError, match="submitted this version"):
        _approve(store, version_id, who["sam"])
    with pytest.raises(PermissionDeniedError, match=r"cannot fill any open approval step"):
        _approve(store, version_id, who["fay"])  # finance holds no role the policy asks
    assert _approve(store, version_id, who["amy"]) == "active"
    with store.work() as session:
        version = session.get(AgreementVersion, version_id)
        assert version is not None
        assert version.review == {
            "policy_version": 1,
            "deviations": [],
            "justification": None,
            "steps": [{"role": "approver", "count": 1}],
            "terms_hash": version.terms_hash,
        }
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
        assert last is not None
        assert last.type == "agreement.version.activated"
        assert last.inputs["last_approval"]["role"] == "approver"


def test_whoever_wrote_or_changed_the_terms_never_approves_them(
    store: Store, tmp_path: Path
) -> None:
    """Maker and checker: a user who drafts or edits terms and also holds the approver role
    cannot approve them, though someone else submitted them; nor can a delegate on that user's
    behalf. Each refusal changes nothing."""
    who, _ = _draft(store, tmp_path)
    with store.work() as session:
        create_user(
            session, "sally", name="Sally", roles=["sales", "approver"], actor=who["admin"], now=NOW
        )
        sally = actor(session, "sally")
        written = add_version(
            session, percent_agreement("A2", parties={"counterparty": "C1"}), actor=sally, now=NOW
        )
        edited = add_version(
            session,
            percent_agreement("A3", parties={"counterparty": "C1"}),
            actor=who["sam"],
            now=NOW,
        )
        edit_draft(
            session,
            edited.id,
            percent_agreement("A3", rate="3", parties={"counterparty": "C1"}),
            actor=sally,
            now=NOW,
        )
        delegate(
            session,
            delegator="sally",
            delegate_to="fred",
            valid_from=NOW.date(),
            valid_to=NOW.date() + dt.timedelta(days=1),
            reason="on leave",
            actor=sally,
            now=NOW,
        )
    for version_id in (written.id, edited.id):
        _submit(store, version_id, who["sam"])
        before = _state(store, version_id)
        with pytest.raises(PermissionDeniedError) as refused:
            _approve(store, version_id, sally)
        assert str(refused.value) == (
            "sally wrote or changed the terms of this version and cannot approve them"
        )
        # fred approves only for sally, whose authority does not reach her own terms
        with pytest.raises(PermissionDeniedError, match="fred cannot fill any open approval"):
            _approve(store, version_id, who["fred"])
        assert _state(store, version_id) == before
        assert _approve(store, version_id, who["amy"]) == "active"


def test_every_failed_check_is_named_and_nothing_changes(store: Store, tmp_path: Path) -> None:
    who, version_id = _draft(
        store,
        tmp_path,
        parties={"counterparty": "C3", "members": ["C9"]},  # C3 has no credit code
        rate="12",
        contract=None,
        settlement={"form": "bank_transfer"},
    )
    with store.work() as session:
        publish(
            session,
            Policy.model_validate({**POLICY, "settlement_forms": ["credit_note"]}),
            actor=who["cora"],
            now=NOW,
        )
    before = _state(store, version_id)
    with pytest.raises(review.ComplianceError) as blocked:
        _submit(store, version_id, who["sam"])
    assert blocked.value.reasons == [
        "party C3 (广州南粤连锁有限公司): it has no unified social credit code, so it is not a "
        "registered legal entity",
        "party C9 is not a known customer",
        "the terms carry no contract (reference and document_sha256 of the signed document)",
        "settlement form bank_transfer is not allowed by the policy (allowed: credit_note)",
        "band 1 rate 12% is above the policy limit 5%: a deviation needs a written justification",
    ]
    assert _state(store, version_id) == before


def test_an_individual_business_is_not_a_legal_entity(store: Store, tmp_path: Path) -> None:
    with store.work() as session:
        code = "92110105MA01234X5" + check_character("92110105MA01234X5")
        rows = [("G1", "李四个体商行", code, "零售", "华北")]
        import_customers(
            session, store.facts, customers_file(tmp_path, rows), actor=staff("a"), now=NOW
        )
        who = people(session, NOW)
        version = add_version(
            session, percent_agreement(parties={"counterparty": "G1"}), actor=staff("sam"), now=NOW
        )
    with pytest.raises(review.ComplianceError, match="个体工商户"):
        _submit(store, version.id, who["sam"])


def test_a_deviation_needs_a_justification_and_compliance(store: Store, tmp_path: Path) -> None:
    # C1 is wholesale (批发): the general limit of 10% applies; 12% deviates.
    who, version_id = _draft(store, tmp_path, parties={"counterparty": "C1"}, rate="12")
    _submit(store, version_id, who["sam"], justification="matching a competitor's offer")
    assert _approve(store, version_id, who["amy"]) == "submitted"
    with pytest.raises(PermissionDeniedError, match="compliance x1"):
        _approve(store, version_id, who["abe"])  # a second approver is not compliance
    assert _approve(store, version_id, who["cora"]) == "active"


def test_a_retail_counterparty_has_the_lower_limit(store: Store, tmp_path: Path) -> None:
    who, version_id = _draft(store, tmp_path, parties={"counterparty": "C2"}, rate="6")
    with pytest.raises(review.ComplianceError, match="rate 6% is above the policy limit 5%"):
        _submit(store, version_id, who["sam"])


def test_approving_changed_terms_fails(store: Store, tmp_path: Path) -> None:
    who, version_id = _draft(store, tmp_path)
    _submit(store, version_id, who["sam"])
    reviewed = _state(store, version_id)[2]
    with store.work() as session:
        review.withdraw(session, version_id, reason="rate typo", actor=who["sam"], now=NOW)
        edit_draft(session, version_id, percent_agreement(rate="3"), actor=staff("sam"), now=NOW)
    _submit(store, version_id, who["sam"])
    before = _state(store, version_id)
    with pytest.raises(review.ComplianceError, match="is not that of the terms submitted now"):
        _approve(store, version_id, who["amy"], terms_hash=reviewed)
    assert _state(store, version_id) == before
    assert _approve(store, version_id, who["amy"]) == "active"


def test_a_version_cannot_skip_approval(store: Store, tmp_path: Path) -> None:
    who, version_id = _draft(store, tmp_path)
    with store.work() as session, pytest.raises(AgreementError, match="only a submitted"):
        activate_version(session, version_id, last_approval={}, actor="sam", now=NOW)
    _submit(store, version_id, who["sam"])
    with store.work() as session, pytest.raises(AgreementError, match="needs approvals"):
        activate_version(session, version_id, last_approval={}, actor="sam", now=NOW)
    with store.work() as session:
        review.reject(session, version_id, reason="wrong customer", actor=who["amy"], now=NOW)
    assert _state(store, version_id)[0] == "draft"


def test_policy_versions_stay_readable(store: Store) -> None:
    later = NOW.date() + dt.timedelta(days=30)
    with store.work() as session:
        who = people(session, NOW)  # publishes version 1, in force from today
        with pytest.raises(PermissionDeniedError, match="needs the role compliance"):
            publish(session, load_policy(EXAMPLE), actor=who["sam"], now=NOW)
        publish(session, load_policy(EXAMPLE), actor=who["cora"], now=NOW)
        publish(
            session,
            Policy.model_validate({**POLICY, "effective_from": str(later)}),
            actor=who["cora"],
            now=NOW,
        )
        with pytest.raises(PolicyError, match="never back-dated"):
            publish(
                session,
                Policy.model_validate({**POLICY, "effective_from": "2026-11-26"}),
                actor=who["cora"],
                now=NOW,
            )
        with pytest.raises(PolicyError, match="before version 3"):
            publish(session, Policy.model_validate(POLICY), actor=who["cora"], now=NOW)
    with store.work() as session:
        assert [v.version for v in policy_versions(session)] == [1, 2, 3]
        assert policy_in_force(session, NOW.date())[0].version == 2  # the later of today's
        assert policy_in_force(session, later)[0].version == 3
        with pytest.raises(NoPolicyError, match="no rebate policy is in force on 2026-11-26"):
            policy_in_force(session, NOW.date() - dt.timedelta(days=1))


def test_a_bad_policy_names_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            '{from: "50000", to: "500000"', '{from: "60000", to: "500000"'
        ),
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"p\.yaml.*band 2 starts at 60000"):
        load_policy(bad)


def test_users_roles_and_delegations(store: Store) -> None:
    with (
        store.work() as session,
        pytest.raises(UserError, match="first user must hold the administrator role"),
    ):
        create_user(session, "x", name="X", roles=["sales"], actor=None, now=NOW)
    with store.work() as session:
        who = people(session, NOW)
        with pytest.raises(UserError, match="users exist already"):
            create_user(session, "y", name="Y", roles=["administrator"], actor=None, now=NOW)
        with pytest.raises(PermissionDeniedError, match="needs the role administrator"):
            create_user(session, "y", name="Y", roles=["sales"], actor=who["sam"], now=NOW)

        def approver(limit: str) -> Any:
            return create_user(
                session,
                "y",
                name="Y",
                roles=["approver"],
                approval_limit=Decimal(limit),
                actor=who["admin"],
                now=NOW,
            )

        # a settlement is paid in whole fen: a limit in fractions of one is refused
        with pytest.raises(UserError) as refused:
            approver("1000.005")
        assert str(refused.value) == (
            "an approval limit has at most 2 decimal places, not 1000.005"
        )
        assert approver("1000.50").approval_limit == Decimal("1000.50")
        with pytest.raises(UserError, match=r"user code 'new user!' may hold only letters"):
            create_user(
                session, "new user!", name="N", roles=["sales"], actor=who["admin"], now=NOW
            )
        with pytest.raises(UserError, match="cannot hold staff roles"):
            create_user(
                session,
                "c1user",
                name="C1",
                roles=["customer", "approver"],
                customer_code="C1",
                actor=who["admin"],
                now=NOW,
            )
        with pytest.raises(UserError, match="there is no customer C9 for customer user c9"):
            create_user(
                session,
                "c9",
                name="C9",
                roles=["customer"],
                customer_code="C9",
                actor=who["admin"],
                now=NOW,
            )
        with pytest.raises(UserError, match="cannot delegate to themself"):
            delegate(
                session,
                delegator="amy",
                delegate_to="amy",
                valid_from=NOW.date(),
                valid_to=NOW.date() + dt.timedelta(days=1),
                reason="x",
                actor=who["amy"],
                now=NOW,
            )
        with pytest.raises(PermissionDeniedError, match="grant a delegation for abe"):
            delegate(
                session,
                delegator="abe",
                delegate_to="amy",
                valid_from=NOW.date(),
                valid_to=NOW.date() + dt.timedelta(days=1),
                reason="x",
                actor=who["amy"],
                now=NOW,
            )
        disable_user(session, "amy", reason="left the company", actor=who["admin"], now=NOW)
    with store.work() as session, pytest.raises(PermissionDeniedError, match="amy is disabled"):
        actor(session, "amy")
    # The administrators: nobody disables themself, and the last active one stays.
    with store.work() as session, pytest.raises(UserError, match="cannot disable their own"):
        disable_user(session, "admin", reason="leaving", actor=who["admin"], now=NOW)
    with store.work() as session:
        create_user(
            session, "ada", name="Ada", roles=["administrator"], actor=who["admin"], now=NOW
        )
    with store.work() as session:
        ada = actor(session, "ada")
        with pytest.raises(UserError, match="cannot disable their own"):
            disable_user(session, "ada", reason="x", actor=ada, now=NOW)
        disable_user(session, "admin", reason="handed over", actor=ada, now=NOW)
    with store.work() as session:
        create_user(session, "bo", name="Bo", roles=["administrator"], actor=ada, now=NOW)
        bo = actor(session, "bo")
    # Two administrators disabling each other at once: the second finds the other the last one.
    with store.work() as session:
        disable_user(session, "bo", reason="a test account", actor=ada, now=NOW)
    with store.work() as session, pytest.raises(UserError, match="ada is the last active admin"):
        disable_user(session, "ada", reason="x", actor=bo, now=NOW)
    with store.work() as session:
        assert [u.code for u in session.scalars(select(User).where(User.active))
                if "administrator" in u.roles] == ["ada"]  # fmt: skip


def test_services_check_the_actors_role(store: Store, tmp_path: Path) -> None:
    """The store's services refuse an actor without the role, before anything is written."""
    with store.work() as session:
        who = people(session, NOW)
    before = _count_events(store)
    attempts = [
        (
            "import customers",
            lambda s: import_customers(
                s, store.facts, customers_file(tmp_path), actor=who["sam"], now=NOW
            ),
        ),
        (
            "draft agreements",
            lambda s: add_version(s, percent_agreement(), actor=who["abe"], now=NOW),
        ),
        (
            "run accruals",
            lambda s: accrue(
                s, store.facts, as_of=dt.date(2026, 3, 31), actor=who["cora"], now=NOW
            ),
        ),
        (
            "close accounting periods",
            lambda s: close_period(s, "2026-03", actor=who["eve"], now=NOW),
        ),
        (
            "void batches",
            lambda s: void_batch(s, store.facts, 1, reason="x", actor=who["ivan"], now=NOW),
        ),
    ]
    for what, attempt in attempts:
        with store.work() as session, pytest.raises(PermissionDeniedError, match=f"may not {what}"):
            attempt(session)
    assert _count_events(store) == before


def _count_events(store: Store) -> int:
    with store.work() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_an_edit_committed_during_submission_is_checked(store: Store, tmp_path: Path) -> None:
    """The submission locks the version before its checks: an edit that commits first is what
    gets checked (a 50% rate, refused), never the terms read before the edit."""
    who, version_id = _draft(store, tmp_path, parties={"counterparty": "C1"})
    edited = threading.Event()
    outcome: list[BaseException | None] = []

    def submit_while_editing() -> None:
        edited.wait()
        try:
            _submit(store, version_id, who["sam"])
            outcome.append(None)
        except review.ComplianceError as refused:
            outcome.append(refused)

    submitter = threading.Thread(target=submit_while_editing)
    submitter.start()
    with store.work() as session:
        edit_draft(
            session,
            version_id,
            percent_agreement(rate="50", parties={"counterparty": "C1"}),
            actor=who["sam"],
            now=NOW,
        )
        edited.set()
        time.sleep(0.3)  # the submission is now waiting for this transaction's lock
    submitter.join()
    assert isinstance(outcome[0], review.ComplianceError)
    assert "rate 50% is above the policy limit 10%" in str(outcome[0])
    assert _state(store, version_id)[0] == "draft"


def test_a_policy_names_each_role_once(store: Store) -> None:
    twice = {**POLICY, "agreement_approval": [{"role": "approver"}, {"role": "approver"}]}
    with pytest.raises(ValueError, match="agreement_approval names approver twice"):
        Policy.model_validate(twice)


def test_a_deviation_adds_one_approver_to_a_role_already_asked(
    store: Store, tmp_path: Path
) -> None:
    """With compliance already in the standard steps, a deviation needs two compliance
    approvals, not one approval counted twice."""
    with store.work() as session:
        who = people(session, NOW)
        create_user(session, "cole", name="Cole", roles=["compliance"], actor=who["admin"], now=NOW)
        publish(
            session,
            Policy.model_validate(
                {
                    **POLICY,
                    "agreement_approval": [{"role": "approver"}, {"role": "compliance"}],
                }
            ),
            actor=who["cora"],
            now=NOW,
        )
    with store.work() as session:  # an import comes first in its transaction
        import_customers(session, store.facts, customers_file(tmp_path), actor=who["fay"], now=NOW)
        version_id = add_version(
            session,
            percent_agreement(rate="12", parties={"counterparty": "C1"}),
            actor=who["sam"],
            now=NOW,
        ).id
    _submit(store, version_id, who["sam"], justification="competitor")
    with store.work() as session:
        version = session.get(AgreementVersion, version_id)
        assert version is not None
        assert version.review is not None
        assert version.review["steps"] == [
            {"role": "approver", "count": 1},
            {"role": "compliance", "count": 2},
        ]
        cole = actor(session, "cole")
    assert _approve(store, version_id, who["amy"]) == "submitted"
    assert _approve(store, version_id, who["cora"]) == "submitted"
    assert _approve(store, version_id, cole) == "active"
