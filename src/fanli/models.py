"""Every ORM model, imported in one place so that metadata (and Alembic) see every table."""

from fanli.agreements.models import AgreementApproval, AgreementRecord, AgreementVersion
from fanli.audit.models import AuditCheckpoint, AuditEvent
from fanli.compliance.models import PolicyVersion
from fanli.customers.models import (
    BankAccount,
    Customer,
    CustomerAssignment,
    CustomerGroup,
    DueDiligenceRecord,
    GroupMembership,
)
from fanli.db.base import Base
from fanli.interfaces.api.models import HttpIdempotency
from fanli.ledger.models import (
    AccountingPeriod,
    AccrualRun,
    JournalEntry,
    JournalLine,
    RebatePeriod,
)
from fanli.oversight.models import AuditRun, Finding
from fanli.products.models import Product
from fanli.sales.models import ImportBatch
from fanli.settlements.models import (
    BalanceCredit,
    BalanceUse,
    IdempotencyRecord,
    Payout,
    Settlement,
    SettlementApproval,
    SettlementLine,
    StatementResponse,
)
from fanli.users.models import ApiToken, Delegation, LoginAttempt, User, WebSession

__all__ = [
    "AccountingPeriod",
    "AccrualRun",
    "AgreementApproval",
    "AgreementRecord",
    "AgreementVersion",
    "ApiToken",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditRun",
    "BalanceCredit",
    "BalanceUse",
    "BankAccount",
    "Base",
    "Customer",
    "CustomerAssignment",
    "CustomerGroup",
    "Delegation",
    "DueDiligenceRecord",
    "Finding",
    "GroupMembership",
    "HttpIdempotency",
    "IdempotencyRecord",
    "ImportBatch",
    "JournalEntry",
    "JournalLine",
    "LoginAttempt",
    "Payout",
    "PolicyVersion",
    "Product",
    "RebatePeriod",
    "Settlement",
    "SettlementApproval",
    "SettlementLine",
    "StatementResponse",
    "User",
    "WebSession",
]
