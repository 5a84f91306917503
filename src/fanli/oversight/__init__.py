"""Oversight of the rebate records: signed checkpoints of the audit trail, the auditor's bundle,
and (with the audit issue's detectors) periodic audits and their findings.

It sits above the domains it examines (settlements, ledger, users), while ``fanli.audit`` (the
trail itself, and the standalone verifier) stays at the bottom, where every service can write
to it.
"""
