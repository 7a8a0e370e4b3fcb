"""Exact statistics of the imported history (CONTRACT.md, "Statistics")."""
