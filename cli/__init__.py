"""Entrypoints: the `infusion-validator` command and its subcommands (above the feed gateways and the
stream worker, which they start; nothing below imports from here)."""
