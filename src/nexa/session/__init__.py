"""Holding secrets (HF and API tokens) for one session, in memory only."""
