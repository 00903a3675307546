"""Alerts on failed quality gates: read check evaluations, keep them in an outbox, deliver each once."""
