"""Triage: tells complaints from noise and sets severity, category, language and risk flags."""
