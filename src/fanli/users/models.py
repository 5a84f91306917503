"""Users, delegations, browser sessions, API tokens and sign-in attempts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from fanli.db.base import Amount, Base, UtcDateTime


class User(Base):
    __tablename__ = "app_user"  # "user" is reserved in PostgreSQL

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # the sign-in name
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    # The largest settlement (absolute amount) this user may approve; None: may approve none.
    approval_limit: Mapped[Decimal | None] = mapped_column(Amount())
    customer_code: Mapped[str | None] = mapped_column(String(64))  # customer users: their entity
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    password_hash: Mapped[str | None] = mapped_column(String(200))  # argon2id; None: no sign-in
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # base32, once enrolled
    # The 30-second step of the last TOTP code accepted: a code signs in once (RFC 6238, 5.2).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # The password was handed over by someone else (an administrator): the user's sessions can
    # do nothing but change it, and it is cleared when the user sets one of their own.
    password_change_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class Delegation(Base):
    """``delegate`` may approve on behalf of ``delegator`` on days in ``[valid_from, valid_to)``."""

    __tablename__ = "delegation"
    __table_args__ = (
        CheckConstraint("delegator_id <> delegate_id", name="two_people"),
        CheckConstraint("valid_from < valid_to", name="dates_ordered"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delegator_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    delegate_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class WebSession(Base):
    """A browser session. The cookie holds a random token; only its sha256 is stored."""

    __tablename__ = "web_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    second_factor: Mapped[bool] = mapped_column(Boolean, default=False)  # TOTP checked
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(32))


class ApiToken(Base):
    """A token for an integration: scoped to some of its user's roles, expiring, revocable.
    Only the sha256 of the token is stored; the token is shown once, when it is created."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class LoginAttempt(Base):
    """Every sign-in attempt, for throttling per account and per source address."""

    __tablename__ = "login_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_code: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
