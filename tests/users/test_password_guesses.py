"""How easy a password is to guess (``fanli.users.auth._guess_score``, zxcvbn): the user's
own words count against it, whatever other passwords are scored at the same moment."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from fanli.users.auth import MIN_GUESS_SCORE, _guess_score
from fanli.users.models import User


def test_a_users_own_name_counts_against_their_password_only() -> None:
    wang = User(code="wxm", name="Wang Xiaoming")
    fay = User(code="fay", name="Fay")
    assert _guess_score("wangxiaoming!!", wang) < MIN_GUESS_SCORE
    assert _guess_score("wangxiaoming!!", fay) >= MIN_GUESS_SCORE


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads take turns every microsecond instead of every 5 ms, so that two scores overlap
    wherever they can."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("switching_often")
def test_scores_at_the_same_moment_keep_their_own_users_words() -> None:
    """zxcvbn keeps the user's words in a module-level dictionary: without the lock around a
    score, a thread scoring for fay replaced Wang's words mid-score (164 of 3,000 scores came
    out wrong when measured)."""
    wang = User(code="wxm", name="Wang Xiaoming")
    fay = User(code="fay", name="Fay")
    wrong: list[int] = []
    start = threading.Barrier(2)

    def score_for_wang() -> None:
        start.wait()
        wrong.extend(
            score
            for score in (_guess_score("wangxiaoming!!", wang) for _ in range(600))
            if score >= MIN_GUESS_SCORE
        )

    def score_for_fay() -> None:
        start.wait()
        for _ in range(600):
            _guess_score("wangxiaoming!!", fay)

    threads = [threading.Thread(target=score_for_wang), threading.Thread(target=score_for_fay)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_passphrase_longer_than_zxcvbn_scores_is_scored_on_its_start() -> None:
    fay = User(code="fay", name="Fay")
    assert _guess_score("Zq7!vR2#mK9@" * 7, fay) == 4
    assert _guess_score("password1234" * 7, fay) < MIN_GUESS_SCORE
