"""Test vectors of the wire contract, and the code that computes them (`python -m schemas.generate` writes them here)."""
