"""Connection settings for aiokafka clients, built from Settings (SASL/TLS included).

Every Kafka client of the product connects with these: aiokafka clients with client_kwargs, the
faust app with streams/faust_runtime/connection.py, which builds on ssl_context. A client given only the bootstrap address works against the
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
