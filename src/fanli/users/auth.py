"""Sign-in: passwords (argon2id), the TOTP second factor, browser sessions, API tokens, throttling.

- A password is stored as an argon2id hash and never leaves this module.
- Users holding a role that moves or approves money (approver, finance, administrator) sign in
  with a TOTP code as well; they cannot sign in until a second factor is enrolled. Any other
  user who has enrolled one gives its code too: a second factor once enrolled is always
  checked.
- A session token and an API token are random; only their sha256 is stored, so a copy of the
  database signs nobody in.
- A password an administrator sets for someone else is known to both: until its user changes
  it, their sessions can do nothing else (``password_change_required``).
- A password has at least 12 characters, 5 of them different, and must not be easy to guess:
  zxcvbn estimates the guesses it takes from lists of leaked passwords, common words and
  names, keyboard walks, dates and the user's own code and name (NIST SP 800-63B asks for
  such a check against commonly used and compromised passwords).
- Sign-in is throttled per account (5 failures in 15 minutes) and per source address (20):
  further attempts are refused before the password is even checked.
- A session ends on sign-out, after 30 idle minutes, after 12 hours, and when its user is
  disabled. An API token carries some of its user's roles, expires, and can be revoked.

Failed sign-ins do not raise: ``sign_in`` records the attempt and returns the outcome, so the
edge can commit the record and answer 401 without telling which part was wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from fanli.audit.service import record
from fanli.kit.errors import FanliError, InputError, NotFoundError, said
from fanli.users.actor import Actor, PermissionDeniedError, Role, require
from fanli.users.models import ApiToken, LoginAttempt, User, WebSession
from fanli.users.queries import as_actor, user_by_code

SECOND_FACTOR_ROLES = frozenset({Role.APPROVER, Role.FINANCE, Role.ADMINISTRATOR})
IDLE_TIMEOUT = dt.timedelta(minutes=30)
SESSION_LIFETIME = dt.timedelta(hours=12)
THROTTLE_WINDOW = dt.timedelta(minutes=15)
MAX_ACCOUNT_FAILURES = 5
MAX_SOURCE_FAILURES = 20
MIN_PASSWORD_LENGTH = 12
MIN_DISTINCT_CHARACTERS = 5
# zxcvbn's score 3: an attacker needs at least 10**8 guesses. "password1234" (a leaked
# password), "1qaz2wsx3edc" (a keyboard walk) and "administrator1" score 0-1.
MIN_GUESS_SCORE = 3
# zxcvbn refuses to score more than 72 characters (it raises); a longer passphrase is scored
# on its first 72, which already hold more guesses than the score asks for unless they are
# common themselves.
_SCORED_CHARACTERS = 72
# zxcvbn keeps the words of the user being scored in a module-level dictionary: two scores at
# once (the web serves requests on several threads) would each see the other's user.
_SCORING = threading.Lock()
MAX_TOKEN_DAYS = 366

_HASHER = PasswordHasher()
# Verified against when the account does not exist, so that timing does not reveal it.
_DUMMY_HASH = _HASHER.hash("fanli: no such account")


class AuthError(FanliError):
    code = "unauthenticated"


class PasswordChangeRequiredError(PermissionDeniedError):
    """A session whose user must first change the password an administrator handed over."""

    code = "password_change_required"


class WrongPasswordError(AuthError):
    """The present password given to change it was wrong. The caller records the failure in a
    transaction of its own (``password_refused``): this one rolls back, and the failures count
    towards the same throttle as sign-ins, so the form cannot be used to guess."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def needs_second_factor(roles: list[str] | frozenset[Role]) -> bool:
    return any(Role(role) in SECOND_FACTOR_ROLES for role in roles)


def _guess_score(password: str, user: User) -> int:
    """zxcvbn's score, 0 to 4, for ``password`` chosen by ``user``: their code and name count
    as words an attacker knows."""
    own_words = [user.code, user.name, user.name.replace(" ", ""), *user.name.split()]
    with _SCORING:
        return int(zxcvbn(password[:_SCORED_CHARACTERS], user_inputs=own_words)["score"])


def set_password(
    session: Session,
    code: str,
    password: str,
    *,
    actor: Actor,
    now: dt.datetime,
    current: str | None = None,
    must_change: bool | None = None,
) -> bool:
    """Set a user's password: the user themself, or an administrator. With ``current`` (a
    user changing their own on the web), the present password must be it.

    A password an administrator hands over is known to two people, so the user must change it
    at the first sign-in (``must_change``; by default, whenever someone else sets it): until
    then their sessions can do nothing else. ``must_change=False`` is for a password the
    user chose and an operator only typed in (the demo's). Returns whether it must be
    changed."""
    if actor.code != code:
        require(actor, Role.ADMINISTRATOR, to=said("set the password of {user}", user=code))
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError.said(
            "a password has at least {length} characters", length=MIN_PASSWORD_LENGTH
        )
    if not password.strip():
        raise AuthError.said("a password cannot be only spaces")
    user = user_by_code(session, code)
    if current is not None:
        since = now - THROTTLE_WINDOW
        if _failures(session, LoginAttempt.user_code, code, since) >= MAX_ACCOUNT_FAILURES:
            raise AuthError.said("too many wrong passwords; wait 15 minutes")
        if not _verifies(user.password_hash, current):
            raise WrongPasswordError.said("that is not the present password")
    if len(set(password.casefold())) < MIN_DISTINCT_CHARACTERS:
        # "aaaaaaaaaaaa" and "121212121212" are long enough and guessed first.
        raise InputError.said_at(
            "a password needs at least {count} different characters",
            field="password",
            count=MIN_DISTINCT_CHARACTERS,
        )
    if _guess_score(password, user) < MIN_GUESS_SCORE:
        raise InputError.said_at(
            "this password is easy to guess (a common password, word or name, a keyboard "
            "pattern, or your own name): choose another",
            field="password",
        )
    handed_over = actor.code != code if must_change is None else must_change
    # A change that changes nothing is no change; and a handed-over password kept would stay
    # known to whoever handed it over.
    keeps_present = (
        password == current
        if current is not None
        else user.password_change_required and _verifies(user.password_hash, password)
    )
    if keeps_present and not handed_over:
        raise InputError.said_at(
            "the new password is the present one; choose another", field="password"
        )
    user.password_hash = _HASHER.hash(password)
    user.password_change_required = handed_over
    _end_sessions(session, user.id, reason="password", now=now)
    session.flush()
    record(
        session,
        type="user.password.set",
        actor=actor.code,
        entity_type="user",
        entity_id=code,
        inputs={},
        outcome={"sessions_ended": True, "change_required": handed_over},
        now=now,
    )
    return handed_over


def _verifies(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` (an argon2id hash) was made from."""
    try:
        return stored is not None and _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def password_refused(session: Session, code: str, *, source: str, now: dt.datetime) -> None:
    """Record a wrong present password (``WrongPasswordError``) as a refused sign-in would be:
    it counts towards the account's throttle."""
    _attempt(session, code, source, succeeded=False, reason="present_password", now=now)


def new_second_factor_secret() -> str:
    """A TOTP secret for a user to add to an authenticator before it replaces their current one
    (``enrol_second_factor`` with ``secret`` and a code it produced)."""
    return pyotp.random_base32()


def enrol_second_factor(
    session: Session,
    code: str,
    *,
    actor: Actor,
    now: dt.datetime,
    secret: str | None = None,
    confirmation: str = "",
) -> str:
    """Give a user a new TOTP secret (returned once, to show as a QR code or type into an
    authenticator app). An administrator provisions it, or the user renews their own.

    With ``secret`` (from ``new_second_factor_secret``), the user's own renewal: it replaces the
    current secret only when ``confirmation`` is a code the new secret produces now, so a
    mistaken click or an unscanned code never locks anyone out."""
    if actor.code != code:
        require(actor, Role.ADMINISTRATOR, to=said("enrol a second factor for {user}", user=code))
    user = user_by_code(session, code)
    if secret is not None:
        if not re.fullmatch(r"[A-Z2-7]{32}", secret):
            raise InputError.said_at("that is not a secret Fanli gave out", field="secret")
        # The authenticator's clock, not the request's: the code was read off it just now.
        confirmed = _matching_step(secret, confirmation, dt.datetime.now(dt.UTC))
        if confirmed is None:
            raise InputError.said_at(
                "the code does not match the new secret; the current one stays in use",
                field="code",
            )
        # The confirmation is a code used: it signs nobody in afterwards.
        user.totp_last_step = confirmed
    else:
        user.totp_last_step = None  # a new secret: no code of it has been used
    user.totp_secret = secret or pyotp.random_base32()
    _end_sessions(session, user.id, reason="second_factor", now=now)
    session.flush()
    record(
        session,
        type="user.second_factor.enrolled",
        actor=actor.code,
        entity_type="user",
        entity_id=code,
        inputs={},
        outcome={"enrolled": True},
        now=now,
    )
    return user.totp_secret


def provisioning_uri(secret: str, code: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=code, issuer_name="Fanli")


class Outcome(StrEnum):
    SIGNED_IN = "signed_in"
    REFUSED = "refused"  # wrong account, password or code: one answer for all three
    THROTTLED = "throttled"


@dataclass(frozen=True)
class SignIn:
    outcome: Outcome
    token: str | None = None  # the session cookie's value, on success
    csrf_token: str | None = None
    actor: Actor | None = None
    password_change_required: bool = False  # the session can do nothing but change it


def _failures(session: Session, column: Any, value: str, since: dt.datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(LoginAttempt)
            .where(
                column == value,
                LoginAttempt.succeeded.is_(False),
                LoginAttempt.at >= since,
            )
        )
        or 0
    )


def sign_in(
    session: Session,
    code: str,
    password: str,
    *,
    totp_code: str | None,
    source: str,
    now: dt.datetime,
) -> SignIn:
    """Check a sign-in; on success open a session. Every attempt is recorded. Spaces around
    the user's code, and inside the six digits of the code ("123 456", as authenticator apps
    show it), are not part of them."""
    code = code.strip()
    totp_code = "".join(totp_code.split()) if totp_code else totp_code
    since = now - THROTTLE_WINDOW
    if (
        _failures(session, LoginAttempt.user_code, code, since) >= MAX_ACCOUNT_FAILURES
        or _failures(session, LoginAttempt.source, source, since) >= MAX_SOURCE_FAILURES
    ):
        _attempt(session, code, source, succeeded=False, reason="throttled", now=now)
        return SignIn(Outcome.THROTTLED)
    # Locked while the code is checked and marked used: two sign-ins with one code, at once,
    # cannot both pass (PostgreSQL; SQLite's writers queue anyway).
    user = session.scalar(select(User).where(User.code == code).with_for_update())
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    # The dummy hash is verified too, so that timing does not tell which accounts exist.
    password_ok = _verifies(stored, password) and stored is not _DUMMY_HASH
    ok = password_ok and user is not None and user.active
    # Roles that move or approve money need the second factor; anyone who has enrolled one
    # gives it too (an administrator hands staff one at creation: it must mean something).
    checks_code = user is not None and (needs_second_factor(user.roles) or bool(user.totp_secret))
    if ok and user is not None and checks_code:
        step = _totp_step(user, totp_code, now)
        ok = step is not None
        if step is not None:
            user.totp_last_step = step
    if not ok or user is None:
        _attempt(session, code, source, succeeded=False, reason="refused", now=now)
        return SignIn(Outcome.REFUSED)
    if _HASHER.check_needs_rehash(stored):
        user.password_hash = _HASHER.hash(password)
    token = secrets.token_urlsafe(32)
    web = WebSession(
        token_sha256=digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        second_factor=checks_code,
        created_at=now,
        last_seen_at=now,
    )
    session.add(web)
    _attempt(session, code, source, succeeded=True, reason="signed_in", now=now)
    return SignIn(
        Outcome.SIGNED_IN, token, web.csrf_token, as_actor(user), user.password_change_required
    )


def _totp_step(user: User, code: str | None, now: dt.datetime) -> int | None:
    """The time step the user's code is for, if it is not before or at the step of the last
    code accepted: a code, once used, signs nobody in again (RFC 6238, 5.2)."""
    if not user.totp_secret:
        return None
    return _matching_step(user.totp_secret, code, now, after=user.totp_last_step)


def _matching_step(
    secret: str, code: str | None, now: dt.datetime, *, after: int | None = None
) -> int | None:
    """The time step ``code`` is for, this one or the one either side of it (a clock a little
    off), later than ``after``; None if it is none of them. Digits typed full-width (１２３,
    as a Chinese input method may give them) count as the digits they are."""
    if not code:
        return None
    digits = "".join(unicodedata.normalize("NFKC", code).split())
    if not (len(digits) == _TOTP_DIGITS and digits.isascii() and digits.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(step), digits):
            return step
    return None


_TOTP_DIGITS = 6


def _attempt(
    session: Session, code: str, source: str, *, succeeded: bool, reason: str, now: dt.datetime
) -> None:
    session.add(LoginAttempt(user_code=code[:64], source=source[:64], succeeded=succeeded, at=now))
    session.flush()
    record(
        session,
        type="user.signed_in" if succeeded else "user.sign_in_refused",
        actor=code[:64],
        entity_type="user",
        entity_id=code[:64],
        inputs={"source": source[:64]},
        outcome={"result": reason},
        now=now,
    )


@dataclass(frozen=True)
class Authenticated:
    actor: Actor
    csrf_token: str | None  # browser sessions: the token state-changing requests must echo
    session_id: int | None
    token_id: int | None
    expires_at: dt.datetime | None = None  # API tokens: when the token stops being accepted
    # Browser sessions of a user whose password was handed over: nothing but changing it.
    password_change_required: bool = False


@dataclass(frozen=True)
class SessionCheck:
    """What a session cookie is worth now, and what must be written about it."""

    who: Authenticated | None  # None: refused
    session_id: int | None
    end_reason: str | None  # it ends now: disabled, idle or expired
    touch: bool  # the last activity is over a minute old


def check_session(session: Session, token: str, *, now: dt.datetime) -> SessionCheck:
    """Check a browser session without writing (``settle_session`` writes what it found)."""
    web = session.scalar(select(WebSession).where(WebSession.token_sha256 == digest(token)))
    if web is None or web.ended_at is not None:
        return SessionCheck(None, None, None, False)
    user = session.get(User, web.user_id)
    assert user is not None
    reason = None
    if not user.active:
        reason = "disabled"
    elif now - web.last_seen_at > IDLE_TIMEOUT:
        reason = "idle"
    elif now - web.created_at > SESSION_LIFETIME:
        reason = "expired"
    if reason:
        return SessionCheck(None, web.id, reason, False)
    who = Authenticated(
        as_actor(user),
        web.csrf_token,
        web.id,
        None,
        password_change_required=user.password_change_required,
    )
    # One write a minute at most, not one per request.
    return SessionCheck(who, web.id, None, now - web.last_seen_at > dt.timedelta(minutes=1))


def settle_session(session: Session, check: SessionCheck, *, now: dt.datetime) -> None:
    """End the session the check found over, or note its activity."""
    if check.session_id is None:
        return
    web = session.get(WebSession, check.session_id)
    assert web is not None
    if check.end_reason and web.ended_at is None:
        web.ended_at = now
        web.end_reason = check.end_reason
        session.flush()
        user = session.get(User, web.user_id)
        record(
            session,
            type="user.session.ended",
            actor=user.code if user else "system",
            entity_type="web_session",
            entity_id=web.id,
            inputs={},
            outcome={"reason": check.end_reason},
            now=now,
        )
    elif check.touch:
        # Only the activity stamp moves: a heartbeat that decides nothing, so no audit event
        # (one a minute per signed-in user would drown the trail).
        web.last_seen_at = max(web.last_seen_at, now)
        session.flush()


def session_actor(session: Session, token: str, *, now: dt.datetime) -> Authenticated:
    """The user of a browser session, in one transaction that may write."""
    check = check_session(session, token, now=now)
    settle_session(session, check, now=now)
    if check.who is None:
        raise AuthError(refusal(check))
    return check.who


def refusal(check: SessionCheck) -> str:
    """Why a checked session is refused."""
    if check.end_reason:
        return f"the session has ended ({check.end_reason}); sign in again"
    return "sign in first"


def sign_out(session: Session, token: str, *, now: dt.datetime) -> None:
    web = session.scalar(select(WebSession).where(WebSession.token_sha256 == digest(token)))
    if web is None or web.ended_at is not None:
        return
    web.ended_at = now
    web.end_reason = "logout"
    user = session.get(User, web.user_id)
    assert user is not None
    session.flush()
    record(
        session,
        type="user.signed_out",
        actor=user.code,
        entity_type="web_session",
        entity_id=web.id,
        inputs={},
        outcome={"reason": "logout"},
        now=now,
    )


def _end_sessions(session: Session, user_id: int, *, reason: str, now: dt.datetime) -> None:
    session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    )


def create_token(
    session: Session,
    *,
    name: str,
    roles: list[Role],
    days: int,
    actor: Actor,
    now: dt.datetime,
) -> tuple[str, ApiToken]:
    """An API token for the actor, carrying ``roles`` (a subset of theirs). The token itself
    is returned once; only its hash is kept."""
    roles = [Role(role) for role in roles]
    if not roles:
        raise InputError.said_at("a token carries at least one role", field="roles")
    if not set(roles) <= set(actor.roles):
        raise PermissionDeniedError.said(
            "{user} cannot give a token roles they do not hold: {roles}",
            user=actor.code,
            roles=tuple(sorted(set(roles) - set(actor.roles))),
        )
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InputError.said_at(
            "a token lives between 1 and {days} days", field="days", days=MAX_TOKEN_DAYS
        )
    if not name.strip():
        raise InputError.said_at("a token needs a name (what uses it)", field="name")
    token = "fanli_" + secrets.token_urlsafe(32)
    row = ApiToken(
        token_sha256=digest(token),
        user_id=actor.id,
        name=name.strip(),
        roles=sorted(role.value for role in roles),
        created_at=now,
        expires_at=now + dt.timedelta(days=days),
    )
    session.add(row)
    session.flush()
    record(
        session,
        type="user.token.created",
        actor=actor.code,
        entity_type="api_token",
        entity_id=row.id,
        inputs={"name": row.name, "roles": row.roles, "days": days},
        outcome={"expires_at": row.expires_at},
        now=now,
    )
    return token, row


def revoke_token(session: Session, token_id: int, *, actor: Actor, now: dt.datetime) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != actor.id and not actor.has(Role.ADMINISTRATOR)):
        raise NotFoundError.said("there is no token {token} of yours", token=token_id)
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
        record(
            session,
            type="user.token.revoked",
            actor=actor.code,
            entity_type="api_token",
            entity_id=row.id,
            inputs={},
            outcome={"revoked_at": now},
            now=now,
        )
    return row


def token_actor(session: Session, token: str, *, now: dt.datetime) -> Authenticated:
    """The user of an API token, with the token's roles (only those the user still holds)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise AuthError.said("the token is unknown, expired or revoked")
    user = session.get(User, row.user_id)
    assert user is not None
    if not user.active:
        raise AuthError.said("the token's user is disabled")
    held = as_actor(user)
    roles = frozenset(Role(role) for role in row.roles) & held.roles
    return Authenticated(
        Actor(
            id=held.id,
            code=held.code,
            roles=roles,
            approval_limit=held.approval_limit,
            customer_code=held.customer_code,
        ),
        None,
        None,
        row.id,
        row.expires_at,
    )
