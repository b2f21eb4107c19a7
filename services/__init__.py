"""Clamor services: listener, triage, router and notifier, their shared runtime and the CLI."""
