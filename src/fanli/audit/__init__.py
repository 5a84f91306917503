"""The audit trail: one hash-chained event per state change."""
