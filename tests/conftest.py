"""Hypothesis profiles (``ci`` by default, ``thorough`` with HYPOTHESIS_PROFILE=thorough) and the
session's PostgreSQL database, shared by the store and the API tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from postgres import postgres_database

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's PostgreSQL database, migrated (see tests/postgres.py)."""
    yield from postgres_database()
