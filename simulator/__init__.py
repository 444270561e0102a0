"""Seeded simulator of a hospital day of medication-administration events (events.md v1)."""
from .day import simulate, simulate_events

__all__ = ["simulate", "simulate_events"]
