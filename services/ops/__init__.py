"""Ops tooling of CONTRACT section 8: lag, replay and rebuild, dead-letter redrive, reconcile."""
