"""Clamor: generated contracts live in clamor.v1."""
