"""The rebate policy, the compliance checks of agreements, and their approval. See README.md."""
