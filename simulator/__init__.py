"""Seeded simulator of a hospital day of medication-administration events (contract v1, docs/contract.md)."""
from .day import simulate, simulate_events

__all__ = ["simulate", "simulate_events"]
