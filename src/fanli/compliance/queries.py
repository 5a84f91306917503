"""Reading the policy: the version in force on a day, and every version ever published."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from fanli.compliance.models import PolicyVersion
from fanli.compliance.policy import Policy
from fanli.kit.errors import FanliError


class NoPolicyError(FanliError):
    code = "no_policy"


def policy_in_force(session: Session, day: dt.date) -> tuple[PolicyVersion, Policy]:
    """The latest published version effective on ``day``."""
    version = session.scalar(
        select(PolicyVersion)
        .where(PolicyVersion.effective_from <= day)
        .order_by(PolicyVersion.effective_from.desc(), PolicyVersion.version.desc())
        .limit(1)
    )
    if version is None:
        raise NoPolicyError.said(
            "no rebate policy is in force on {day}: compliance must publish one first", day=day
        )
    return version, Policy.model_validate(version.document)


def policy_versions(session: Session) -> list[PolicyVersion]:
    return list(session.scalars(select(PolicyVersion).order_by(PolicyVersion.version)))
