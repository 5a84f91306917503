"""The relational store: SQLAlchemy engine and sessions, the declarative base, migrations."""
