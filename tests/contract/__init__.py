"""Tests that a non-Python implementation can run against the published contract (Java vectors)."""
