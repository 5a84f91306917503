"""Customers: legal entities, their identifiers and attributes, and buying groups."""
