"""Accrual runs, the double-entry journal, accounting periods and their close, GL export."""
