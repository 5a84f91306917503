"""The audit trail against tampering: every kind of edit names the first event that does not
match, a rewritten history fails against an earlier signed checkpoint, and the append-only
tables refuse UPDATE, DELETE and TRUNCATE.

Each case tampers inside one transaction, verifies in it, and rolls back, so one trail serves
hundreds of cases on each database."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fanli.audit.trail import Verification, plain_events, verify
from fanli.audit.verifier import TreeHeads, leaf_hash, node_hash, tree_head
from fanli.db.roles import grant_application_role
from fanli.db.session import make_engine, session_factory
from fanli.kit.errors import InputError
from fanli.oversight.checkpoints import make_checkpoint
from fanli.sales.store import FactStore
from postgres import empty_postgres
from store import tampering
from store.builders import staff
from store.conftest import NOW, Store
from store.test_audit import _scenario

# RFC 6962's reference tree (the Certificate Transparency test vectors): its leaves, and the
# tree head for every size from 0 to 8.
RFC6962_LEAVES = [bytes.fromhex(h) for h in
                  ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                   "606162636465666768696a6b6c6d6e6f")]  # fmt: skip
RFC6962_HEADS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_tree_heads_are_rfc_6962() -> None:
    for size, expected in enumerate(RFC6962_HEADS):
        assert tree_head(RFC6962_LEAVES[:size]).hex() == expected


def _by_definition(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, literally: split at the largest power of two below n."""
    if not leaves:
        return tree_head([])
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(_by_definition(leaves[:split]), _by_definition(leaves[split:]))


def test_growing_heads_match_the_definition_at_every_size() -> None:
    leaves = [bytes([n, n * 7 % 256]) for n in range(70)]
    heads = TreeHeads()
    for size in range(71):
        assert heads.head() == _by_definition(leaves[:size])
        if size < 70:
            heads.append(leaves[size])


# ---- tampering -------------------------------------------------------------------------------


class Trail:
    """One store's trail, a checkpoint over all of it, and a way to try an edit."""

    def __init__(self, store: Store, tmp_path: Path) -> None:
        _scenario(store, tmp_path)
        self.store = store
        self.key = Ed25519PrivateKey.generate()
        with store.work() as session:
            self.checkpoint = make_checkpoint(session, self.key, actor=staff("adm"), now=NOW)
        with store.work() as session:
            self.events = list(plain_events(session))
        self.size = len(self.events)

    def after(self, edit: Callable[[Connection], None]) -> Verification:
        with self.store.engine.connect() as connection:
            transaction = connection.begin()
            try:
                tampering.unprotect(connection)
                edit(connection)
                return verify(Session(bind=connection), [self.checkpoint], self.key.public_key())
            finally:
                transaction.rollback()


@pytest.fixture
def trail(store: Store, tmp_path: Path) -> Trail:
    return Trail(store, tmp_path)


def test_the_untouched_trail_holds(trail: Trail) -> None:
    result = trail.after(lambda _connection: None)
    assert result.holds
    assert (result.events, result.checkpoints_checked, result.covered) == (
        trail.size,
        1,
        trail.size,
    )
    assert trail.checkpoint["tree_size"] == trail.size  # it covers its own event


EDITS = ("flip", "delete", "delete_renumber", "swap", "insert", "insert_bad_hash", "truncate")


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(EDITS),
    position=st.floats(0, 1, exclude_max=True),
    other=st.floats(0, 1, exclude_max=True),
    column=st.sampled_from(tampering.COLUMNS[1:]),
    seed=st.integers(0, 2**32),
)
def test_any_edit_names_the_first_event_that_does_not_match(  # noqa: PLR0917
    trail: Trail, kind: str, position: float, other: float, column: str, seed: int
) -> None:
    size = trail.size
    seq = 1 + int(position * size)  # 1 .. size
    rng = random.Random(seed)
    expected = seq
    edit: Callable[[Connection], None]
    if kind == "flip":
        edit = lambda c: tampering.flip(c, seq, column, rng)  # noqa: E731
    elif kind in {"delete", "delete_renumber"}:
        edit = lambda c: tampering.delete(c, seq, renumber=kind == "delete_renumber")  # noqa: E731
    elif kind == "swap":
        seq = 1 + int(position * (size - 1))  # 1 .. size - 1
        second = seq + 1 + int(other * (size - seq))  # seq + 1 .. size
        expected = seq
        edit = lambda c: tampering.swap(c, seq, second)  # noqa: E731
    elif kind in {"insert", "insert_bad_hash"}:
        edit = lambda c: tampering.insert(c, seq, valid_hash=kind == "insert")  # noqa: E731
    else:  # truncate: keep the first seq - 1 events; only the checkpoint can tell
        edit = lambda c: tampering.truncate(c, seq - 1)  # noqa: E731
    result = trail.after(edit)
    assert not result.holds
    assert result.first_bad_event == expected, (kind, seq, column, result.broken, result.problems)


def test_a_rewritten_history_fails_against_an_earlier_checkpoint(trail: Trail) -> None:
    for seq in (1, trail.size // 2, trail.size):
        result = trail.after(lambda c, seq=seq: tampering.rewrite(c, seq, trail.events))
        assert result.broken is None  # every hash recomputed: the chain alone looks intact
        assert not result.holds
        assert result.problems == [
            f"checkpoint of {trail.size} events made {trail.checkpoint['made_at']}: the first "
            f"{trail.size} events do not match it, so history was rewritten between event 1 "
            f"and event {trail.size}"
        ]


def test_a_checkpoint_signed_with_another_key_is_refused(trail: Trail) -> None:
    other = Ed25519PrivateKey.generate()
    with trail.store.engine.connect() as connection:
        result = verify(Session(bind=connection), [trail.checkpoint], other.public_key())
    assert result.problems == [
        f"checkpoint of {trail.size} events made {trail.checkpoint['made_at']}: its signature "
        "does not verify with this public key"
    ]


# ---- protection in the database --------------------------------------------------------------

REFUSED = {
    "UPDATE audit_event SET actor = 'mallory' WHERE seq = 1",
    "DELETE FROM audit_event WHERE seq = 1",
    "UPDATE journal_line SET amount = 0",
    "DELETE FROM journal_line",
    "UPDATE journal_entry SET memo = 'x'",
    "DELETE FROM journal_entry",
    "UPDATE audit_checkpoint SET tree_size = 1",
    "DELETE FROM audit_checkpoint",
}


def _refused(store: Store, statement: str) -> str:
    with (
        store.engine.connect() as connection,
        connection.begin(),
        pytest.raises(DBAPIError) as refused,
    ):
        connection.execute(text(statement))
    return str(refused.value.orig)


def test_append_only_tables_refuse_changes_even_from_the_owner(trail: Trail) -> None:
    statements: set[str] = set(REFUSED)
    if trail.store.backend == "postgresql":
        statements |= {f"TRUNCATE {t} CASCADE" for t in ("audit_event", "journal_line")}
    for statement in sorted(statements):
        message = _refused(trail.store, statement)
        assert "is append-only" in message, (statement, message)
    with trail.store.work() as session:  # and nothing changed
        assert list(plain_events(session)) == trail.events


APP_ROLE = "fanli_app_test"


@pytest.fixture
def postgres_store(postgres_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(postgres_url)
    empty_postgres(engine)
    yield Store(engine, session_factory(engine), FactStore(tmp_path / "facts"), "postgresql")
    engine.dispose()


def test_the_application_role_cannot_change_history(postgres_store: Store, tmp_path: Path) -> None:
    store = postgres_store
    with store.engine.begin() as connection:
        connection.execute(
            text(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') "
                f"THEN CREATE ROLE {APP_ROLE} LOGIN; END IF; END $$"
            )
        )
    grant_application_role(store.engine, APP_ROLE)
    url = store.engine.url.set(username=APP_ROLE).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        as_app = Store(engine, session_factory(engine), store.facts, store.backend)
        _scenario(as_app, tmp_path)  # imports, an accrual, a void, a period close, a GL export
        for statement in sorted(REFUSED | {"TRUNCATE audit_event", "TRUNCATE journal_line"}):
            message = _refused(as_app, statement)
            assert "permission denied" in message, (statement, message)
        with as_app.work() as session:
            assert verify(session).holds
    finally:
        engine.dispose()


def test_grants_are_postgresql_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fanli.db'}")
    try:
        with pytest.raises(InputError, match="roles and grants are PostgreSQL's"):
            grant_application_role(engine, APP_ROLE)
    finally:
        engine.dispose()
