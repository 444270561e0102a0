"""faust's connection settings, from the same Settings as every other client (SASL/TLS included)."""
from __future__ import annotations

import faust

from streams.config import Settings
from streams.kafka import ssl_context


def faust_connection(s: Settings) -> dict:
    """faust.App's broker and broker_credentials: what its own consumer and producer connect with."""
    return {"broker": [f"kafka://{h}" for h in s.bootstrap_servers.split(",")],
            "broker_credentials": faust_credentials(s)}


def faust_credentials(s: Settings):
    """faust's broker_credentials for the configured security protocol (None for PLAINTEXT)."""
    if s.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                     mechanism=s.sasl_mechanism, ssl_context=ssl_context(s))
    if s.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    return None
