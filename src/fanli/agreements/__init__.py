"""Agreements: the written terms of a rebate, their format and their validation."""
