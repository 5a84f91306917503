"""Products and their hierarchy (category, brand, any attribute)."""
