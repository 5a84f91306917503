"""Users, their roles and approval limits, and dated delegations. See README.md."""
