"""Every ORM model, imported in one place so that metadata (and Alembic) see every table."""

from fanli.agreements.models import AgreementRecord, AgreementVersion
from fanli.audit.models import AuditEvent
from fanli.customers.models import Customer, CustomerGroup, GroupMembership
from fanli.db.base import Base
from fanli.ledger.models import (
    AccountingPeriod,
    AccrualRun,
    JournalEntry,
    JournalLine,
)
from fanli.products.models import Product
from fanli.sales.models import ImportBatch

__all__ = [
    "AccountingPeriod",
    "AccrualRun",
    "AgreementRecord",
    "AgreementVersion",
    "AuditEvent",
    "Base",
    "Customer",
    "CustomerGroup",
    "GroupMembership",
    "ImportBatch",
    "JournalEntry",
    "JournalLine",
    "Product",
]
