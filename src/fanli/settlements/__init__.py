"""Settlements, their approval, payouts in every form, rebate balance accounts. See README.md."""
