"""The standalone verifier's chain check on plain events, with no database: each way a chain can
be edited names the right event and says how, including the edits the database's constraints
would stop (an inserted event that links properly needs the unique prev_hash dropped first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fanli.audit.verifier import GENESIS, Break, event_hash, first_break, read_checkpoints


def _chain(size: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    previous = GENESIS
    for seq in range(1, size + 1):
        event = {
            "seq": seq,
            "occurred_at": "2026-11-27T09:30:00+00:00",
            "type": "settlement.paid",
            "actor": "fay",
            "entity_type": "settlement",
            "entity_id": str(seq),
            "inputs": {},
            "outcome": {"amount": f"{seq}00.00"},
            "prev_hash": previous,
        }
        event["hash"] = event_hash(event)
        events.append(event)
        previous = event["hash"]
    return events


def _renumbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**event, "seq": seq} for seq, event in enumerate(events, start=1)]


def _rehashed(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = {**event, **changes}
    changed["hash"] = event_hash(changed)
    return changed


def test_an_intact_chain_holds() -> None:
    assert first_break(_chain(6)) is None
    assert first_break([]) is None


def test_each_edit_is_named_and_explained() -> None:
    chain = _chain(6)
    changed = [*chain[:2], {**chain[2], "actor": "mallory"}, *chain[3:]]
    assert first_break(changed) == Break(3, "changed: its hash does not match its content")

    gap = [*chain[:3], *chain[4:]]
    assert first_break(gap) == Break(4, "missing: the chain goes from event 3 to event 5")

    deleted = _renumbered([*chain[:3], *chain[4:]])
    assert first_break(deleted) == Break(
        4,
        "missing: event 4 holds what was event 5, so event 4 was deleted and the later ones "
        "renumbered",
    )

    swapped = _renumbered([*chain[:1], chain[2], chain[1], *chain[3:]])
    assert first_break(swapped) == Break(2, "moved: events 2 and 3 changed places")

    # An inserted event that links to its predecessor (possible only without the unique
    # prev_hash): it passes, and the next one shows the shift.
    linked = _rehashed(chain[1], seq=3, prev_hash=chain[1]["hash"], actor="mallory")
    inserted = [*chain[:2], linked, *({**e, "seq": e["seq"] + 1} for e in chain[2:])]
    assert first_break(inserted) == Break(
        3,
        "inserted: event 4 holds what was event 3, so an event was put in at 3 and the later "
        "ones renumbered",
    )

    # An inserted event with a valid hash of its own but no link (what the database allows).
    unlinked = _rehashed(chain[1], seq=3, prev_hash="f" * 64, actor="mallory")
    inserted = [*chain[:2], unlinked, *({**e, "seq": e["seq"] + 1} for e in chain[2:])]
    assert first_break(inserted) == Break(
        3,
        "inserted: it links to no earlier event, and event 4 holds what was event 3, so this "
        "one was put in and the later ones renumbered",
    )

    # One event changed and its own hash recomputed: its successor's link shows it.
    recomputed = [*chain[:3], _rehashed(chain[3], actor="mallory"), *chain[4:]]
    assert first_break(recomputed) == Break(
        4,
        "changed: event 5 names another predecessor, so event 4 was changed and its hash "
        "recomputed",
    )

    first = [_rehashed(chain[0], prev_hash="1" * 64), *chain[1:]]
    assert first_break(first) == Break(1, "changed: the first event does not start the chain")

    unreadable = [*chain[:1], {**chain[1], "unreadable": "bad JSON"}, *chain[2:]]
    assert first_break(unreadable) == Break(2, "changed: bad JSON")


def test_a_checkpoint_file_that_is_not_text_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    path.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(ValueError, match="not UTF-8 text, so not a checkpoint file") as raised:
        read_checkpoints(path)
    assert str(raised.value) == f"{path}: not UTF-8 text, so not a checkpoint file"
    path.write_text('{"tree_size": 1}\nnot json\n', "utf-8")
    with pytest.raises(ValueError, match="not JSON") as raised:
        read_checkpoints(path)
    assert str(raised.value) == f"{path}, line 2: not JSON (Expecting value)"
