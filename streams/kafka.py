"""Connection settings for aiokafka clients and faust, built from Settings (SASL/TLS included).

Every Kafka client of the product connects with these: aiokafka clients with client_kwargs, the
faust app with faust_connection. A client given only the bootstrap address works against the
PLAINTEXT test broker and fails on a secured cluster, so none is built any other way."""
from __future__ import annotations

import ssl

from streams.config import Settings


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    if not s.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(cafile=s.ssl_cafile)
    if s.ssl_certfile:
        context.load_cert_chain(s.ssl_certfile, s.ssl_keyfile)
    return context


def client_kwargs(s: Settings) -> dict:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient."""
    kwargs: dict = {"bootstrap_servers": s.bootstrap_servers, "security_protocol": s.security_protocol}
    context = ssl_context(s)
    if context is not None:
        kwargs["ssl_context"] = context
    if s.security_protocol.startswith("SASL"):
        kwargs.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                      sasl_plain_password=s.sasl_password)
    return kwargs


def faust_connection(s: Settings) -> dict:
    """faust.App's broker and broker_credentials: what its own consumer and producer connect with."""
    return {"broker": [f"kafka://{h}" for h in s.bootstrap_servers.split(",")],
            "broker_credentials": faust_credentials(s)}


def faust_credentials(s: Settings):
    """faust's broker_credentials for the configured security protocol (None for PLAINTEXT)."""
    import faust

    if s.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                     mechanism=s.sasl_mechanism, ssl_context=ssl_context(s))
    if s.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context(s))
    return None
