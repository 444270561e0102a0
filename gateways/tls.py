"""TLS for the feed listeners: a server context from a certificate and key, and, when a client CA
is given, mutual TLS (interface engines present certificates signed by it; others are refused in
the handshake). TLS 1.2 at least."""
from __future__ import annotations

import ssl


def server_context(certfile: str | None, keyfile: str | None, client_cafile: str | None = None) -> ssl.SSLContext | None:
    """None when no certificate is configured (plain TCP on loopback, the default)."""
    if not certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if client_cafile:
        context.load_verify_locations(cafile=client_cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
