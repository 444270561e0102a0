"""The MLLP listener as a hospital security review tries it (issue 13), on the real embedded broker:
loopback by default, TLS and mutual TLS (certificates made here, none committed), the size limit
(a 100 KB message taken, a bigger-than-the-limit one answered once and dead-lettered once), the
idle / half-sent timeout, the connection cap, a short flood, a quick stop, and a canary: patient
data planted in every field the feed reads never comes back in an ACK, a dead letter's reason, a
log record or the sender's output.

Decided here (docs/operations.md: "no patient data in logs, metric labels, ACKs or rejection
reasons"): the encounter id (PV1-19) and the order number (ORC-3) are keys of the events and alerts
by design, but no ACK, reason or log says them; they get the canary too. MSH-10 (the message control
id) is said back in MSA-2, as HL7 requires: it is the sender's message id, not planted. A dead
letter's `raw` holds the input by design (replay); its bounded length is checked.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import generate_latest

from feeds import DrugClasses
from gateways import mllp, tls
from gateways.bridge import Bridge
from gateways.ops import FeedMetrics
from gateways.gateway import send_hl7
from streams.broker import free_port
from streams.topics import create_topics
from tests.stream_harness import unique_settings

SAMPLES = Path(__file__).parent.parent / "samples" / "hl7"
START, END = b"\x0b", b"\x1c\r"
CANARIES = ("ZZCANARY", "MRNCANARY01", "19330415", "1933-04-15")


# -- the listener on the real broker ---------------------------------------------------------

@pytest.fixture
async def kafka(broker):
    settings = unique_settings(broker.bootstrap)
    await create_topics(settings, log=lambda *_: None)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        yield settings, Bridge(producer, settings.topics)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def listening(bridge: Bridge, **limits):
    listener = await mllp.serve(bridge, DrugClasses.load(), "127.0.0.1", 0, **limits)
    try:
        yield listener, listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()


async def dead_letters(settings, count: int, timeout: float = 10.0) -> list[dict]:
    consumer = AIOKafkaConsumer(settings.topics.dead_letters, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    letters: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            letters += [orjson.loads(m.value) for ms in batch.values() for m in ms]
            if len(letters) >= count:
                batch = await consumer.getmany(timeout_ms=500)  # and nothing more
                letters += [orjson.loads(m.value) for ms in batch.values() for m in ms]
                break
        return letters
    finally:
        await consumer.stop()


async def exchange(port: int, *payloads: bytes, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> list[bytes]:
    """Send each payload as it is (frame it yourself) and read one MLLP answer after each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    answers = []
    try:
        for payload in payloads:
            writer.write(payload)
            await writer.drain()
            answers.append(await asyncio.wait_for(reader.readuntil(END), timeout))
    finally:
        writer.close()
    return answers


def framed(message: bytes) -> bytes:
    return START + message + END


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def msa(ack: bytes) -> list[str]:
    line = next(seg for seg in ack.strip(START + END).split(b"\r") if seg.startswith(b"MSA"))
    return line.decode().split("|")


# -- bind default ------------------------------------------------------------------------------

def test_hl7_listen_binds_loopback_unless_configured_and_stops_quickly_with_idle_connections(broker):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IV_")}
    env.update(IV_BOOTSTRAP_SERVERS=broker.bootstrap, IV_HL7_PORT=str(port), IV_LOG_FORMAT="text")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "hl7", "listen"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    idle = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                idle.append(__import__("socket").create_connection(("127.0.0.1", port), timeout=1))
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        listening_on = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                        if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert [line.split()[1] for line in listening_on] == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
        idle += [__import__("socket").create_connection(("127.0.0.1", port), timeout=1) for _ in range(20)]
        idle[-1].sendall(START + b"MSH|^~\\&|half")  # and one half-sent message
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        took = time.monotonic() - started
    finally:
        for s in idle:
            s.close()
        if proc.poll() is None:
            proc.kill()
    print(f"SIGTERM with 21 open connections: stopped in {took:.2f} s")
    assert proc.returncode == 0 and took < 5, out
    assert f"HL7 MLLP listener on 127.0.0.1:{port} (plain TCP, no TLS)" in out


def test_hl7_listen_takes_host_and_no_unused_flags():
    from cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["hl7", "listen"]).host is None  # IV_HL7_HOST, 127.0.0.1 by default
    assert parser.parse_args(["hl7", "listen", "--host", "0.0.0.0"]).host == "0.0.0.0"
    assert parser.parse_args(["hl7", "listen", "--metrics-port", "9"]).metrics_port == 9  # its /healthz, /metrics
    with pytest.raises(SystemExit):
        parser.parse_args(["hl7", "listen", "--policy", "x.toml"])  # coding is the worker's


# -- TLS and mutual TLS --------------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key, issuer_key, issuer: x509.Name, ca: bool = False, days: tuple[int, int] = (-1, 30),
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A CA, the listener's certificate, a client's, a client's from another CA and an expired
    client's: made for this run in a temporary directory, never committed."""
    d = tmp_path_factory.mktemp("pki")
    out: dict[str, str] = {}

    def write(name: str, cert: x509.Certificate, key=None) -> None:
        (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}.crt"] = str(d / f"{name}.crt")
        if key is not None:
            (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
            out[f"{name}.key"] = str(d / f"{name}.key")

    for ca_name in ("ca", "other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(ca_name, _cert(ca_name, key, key, _name(ca_name), ca=True), key)
        out[f"{ca_name}.pkey"] = key  # type: ignore[assignment]
    for name, ca_name, days, server in (("server", "ca", (-1, 30), True), ("client", "ca", (-1, 30), False),
                                        ("stranger", "other-ca", (-1, 30), False),
                                        ("expired", "ca", (-30, -1), False)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, _cert(name, key, out[f"{ca_name}.pkey"], _name(ca_name), days=days, server=server), key)
    return out


async def test_mllp_over_tls(kafka, pki):
    _, bridge = kafka
    context = tls.server_context(pki["server.crt"], pki["server.key"])
    async with listening(bridge, ssl=context) as (_, port):
        lines: list[str] = []
        assert await send_hl7("127.0.0.1", port, [str(SAMPLES / "ras-start.hl7")], out=lines.append,
                              ssl=mllp.client_context(pki["ca.crt"])) == 0
        assert lines == ["MAR0001001: AA"]
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError)):
            await exchange(port, framed(sample("ras-start.hl7")), timeout=3)  # plain TCP to a TLS listener
        with pytest.raises(ssl.SSLCertVerificationError):  # a listener not signed by the CA we trust
            await exchange(port, framed(sample("ras-start.hl7")), context=mllp.client_context(pki["other-ca.crt"]))


async def test_mutual_tls_takes_only_clients_with_a_valid_certificate_of_the_ca(kafka, pki):
    _, bridge = kafka
    context = tls.server_context(pki["server.crt"], pki["server.key"], pki["ca.crt"])
    async with listening(bridge, ssl=context) as (listener, port):
        # the sender as an analyst runs it: hl7 send --cafile --certfile --keyfile
        from cli.main import main
        argv = ["hl7", "send", "--port", str(port), "--cafile", pki["ca.crt"], "--certfile", pki["client.crt"],
                "--keyfile", pki["client.key"], str(SAMPLES / "ras-start.hl7")]
        assert await asyncio.to_thread(main, argv) == 0
        assert bridge.accepted == 1
        for client in (None, "stranger", "expired"):
            ctx = mllp.client_context(pki["ca.crt"], pki.get(f"{client}.crt"), pki.get(f"{client}.key"))
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                await exchange(port, framed(sample("ras-start.hl7")), context=ctx, timeout=5)
        assert bridge.accepted == 1 and not listener.connections


# -- size, malformed input -----------------------------------------------------------------------

async def test_a_100_kb_message_is_taken_and_one_over_the_limit_is_answered_once_and_dead_lettered_once(kafka):
    settings, bridge = kafka
    big = sample("ras-start.hl7").rstrip(b"\r") + b"\rNTE|1||" + b"x" * 100_000 + b"\r"
    huge = sample("ras-stop.hl7").rstrip(b"\r") + b"\rNTE|1||" + b"y" * 1_500_000 + b"\r"
    async with listening(bridge, max_bytes=1_048_576) as (_, port):
        answers = await exchange(port, framed(big), framed(huge), framed(b"z" * 2_000_000),
                                 framed(sample("ras-stop.hl7")))
    codes = [msa(a)[1] for a in answers]
    assert codes == ["AA", "AR", "AR", "AA"], answers
    assert msa(answers[1])[2] == "MAR0001002"  # built from the message's MSH: MSA-2 is its control id
    assert msa(answers[1])[3].startswith("message over 1048576 bytes")
    assert all(len(a) < 2000 for a in answers)
    letters = await dead_letters(settings, 2)
    assert [(r["category"], r["source"]["bytes"]) for r in letters] == [("hl7_oversize", len(huge)),
                                                                       ("hl7_oversize", 2_000_000)]
    assert all(len(r["raw"]) < 2100 for r in letters)
    assert letters[0]["raw"].startswith("MSH|") and letters[0]["source"]["message_control_id"] == "MAR0001002"


async def test_malformed_input_is_answered_never_reset(kafka, caplog):
    _, bridge = kafka
    junk = [framed(b""), framed(b"\x00\xff\xfe" * 50), framed(b"MSH|"), framed(b"MSH|^~\\&" + b"|" * 5000),
            framed(b"\x0bMSH|^~\\&|A\x0b\x0b"), framed(sample("ras-start.hl7").replace(b"|", b"\x1c", 3)),
            framed(sample("ras-start.hl7")[:200])]
    async with listening(bridge) as (_, port):
        answers = await exchange(port, *junk, framed(sample("ras-start.hl7")))
        http = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not MLLP: one AR, then closed
    assert [msa(a)[1] for a in answers] == ["AR"] * 6 + ["AE", "AA"], answers  # the connection survives them all
    assert msa(http[0])[1] == "AR" and "outside an MLLP block" in msa(http[0])[3]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- timeouts, connection cap, flood ---------------------------------------------------------------

async def test_idle_and_half_sent_connections_are_closed(kafka):
    _, bridge = kafka
    async with listening(bridge, idle_timeout=0.5) as (listener, port):
        async def closed_after(payload: bytes, trickle: bool = False) -> float:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = time.monotonic()
            writer.write(payload)

            async def drip():
                while True:  # a byte every 0.1 s: never idle, never whole
                    await asyncio.sleep(0.1)
                    writer.write(b"x")
            dripping = asyncio.create_task(drip()) if trickle else None
            try:
                assert await asyncio.wait_for(reader.read(), 5) == b""
            except ConnectionResetError:
                pass  # closed with trickled bytes still unread: the kernel answers RST, not FIN
            finally:
                if dripping:
                    dripping.cancel()
                writer.close()
            return time.monotonic() - started

        idle, half, slow = await asyncio.gather(closed_after(b""), closed_after(START + b"MSH|^~\\&|A"),
                                                closed_after(START + b"MSH|^~\\&|A", trickle=True))
        assert all(0.4 < t < 3 for t in (idle, half, slow)), (idle, half, slow)
        assert msa((await exchange(port, framed(sample("ras-start.hl7"))))[0])[1] == "AA"  # still serving
        await asyncio.sleep(0.1)
        assert not listener.connections


async def test_connections_over_the_cap_are_closed_at_once_and_counted(kafka, caplog):
    _, bridge = kafka
    async with listening(bridge, max_connections=3) as (listener, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for reader, writer in held:  # each answered: each counted by the listener
            writer.write(framed(sample("ras-start.hl7")))
            assert msa(await asyncio.wait_for(reader.readuntil(END), 10))[1] == "AA"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once
        writer.close()
        assert listener.refused == 1 and len(listener.connections) == 3
        assert "refused: 3 open" in caplog.text
        reader, writer = held[0]
        writer.write(framed(sample("ras-stop.hl7")))  # those held still work
        assert msa(await asyncio.wait_for(reader.readuntil(END), 10))[1] == "AA"
        for _, w in held:
            w.close()


async def test_a_flood_of_connections_leaves_a_sender_answered(kafka):
    _, bridge = kafka
    async with listening(bridge, idle_timeout=30, max_connections=100) as (listener, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # the interface engine, connected before

        async def flooder(n: int):
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
            except (OSError, asyncio.TimeoutError):
                return None
            w.write([b"", START + b"MSH|^~\\&|half", b"\x16\x03\x01garbage", framed(b"MSH|")][n % 4])
            return w

        flood = await asyncio.gather(*(flooder(n) for n in range(500)))
        started = time.monotonic()
        writer.write(framed(sample("ras-start.hl7")))
        ack = await asyncio.wait_for(reader.readuntil(END), 5)
        latency = time.monotonic() - started
        print(f"500-connection flood: {sum(w is not None for w in flood)} connected, {listener.refused} over the cap "
              f"refused; a message on an established connection answered in {latency * 1000:.0f} ms")
        assert msa(ack)[1] == "AA"
        for w in flood:
            if w is not None:
                w.close()
        writer.close()
        await asyncio.sleep(0.3)
        assert msa((await exchange(port, framed(sample("ras-stop.hl7"))))[0])[1] == "AA"  # and new ones too


# -- the canary ------------------------------------------------------------------------------------

NAME, MRN, BIRTH = "ZZCANARY", "MRNCANARY01", "19330415"


def _canary(name: str = "ras-start.hl7") -> bytes:
    """A sample with the canary in PID-3, PID-5, PID-7, PV1-19 (visit), ORC-2/3 (order), RXA-9 notes,
    RXR-2 site text, and an NTE of free text."""
    raw = sample(name)
    for old, new in ((b"MRN4481207", MRN.encode()), (b"TESTPATIENT^ALEX", f"{NAME}^PATIENT".encode()),
                     (b"19620314", BIRTH.encode()), (b"V5510001", f"V{NAME}".encode()),
                     (b"RX5101", f"{NAME}ORD".encode()), (b"PL5101", f"{MRN}P".encode()),
                     (b"Left Mid Forearm", f"{NAME} {BIRTH}".encode())):
        raw = raw.replace(old, new)
    return raw.rstrip(b"\r") + f"\rNTE|1||{NAME} {MRN} born {BIRTH}\r".encode()


def _field(raw: bytes, seg: bytes, n: int, value: bytes) -> bytes:
    out = []
    for line in raw.split(b"\r"):
        if line.startswith(seg + b"|"):
            parts = line.split(b"|")
            n_ = n - 1 if seg == b"MSH" else n
            parts += [b""] * (n_ + 1 - len(parts))
            parts[n_] = value
            line = b"|".join(parts)
        out.append(line)
    return b"\r".join(out)


def canary_messages() -> list[bytes]:
    base, adt = _canary(), _canary("adt-a03.hl7")
    c = NAME.encode()
    return [
        base,  # taken: the canary is in the events' keys and the dead letter's raw only
        base.replace(b"\rPV1|", f"\rPID#1\\F\\\\F\\{MRN}^^^HOSP^MR\rPV1|".encode()),  # a broken line
        _field(_field(base, b"RXA", 3, BIRTH.encode() + b"083000"), b"RXA", 4, c),  # times: before 2000, junk
        _field(_field(base, b"MSH", 7, b"20261124083112"), b"RXA", 3, b"20261124083000"),  # no offset, no zone
        _field(base, b"RXA", 3, BIRTH.encode()),  # not precise to the minute
        _field(base, b"RXA", 5, f"{MRN}^{NAME} drug^LOCAL".encode()),  # unknown drug, local code and text
        _field(base, b"RXA", 5, f"^{NAME} {BIRTH}^".encode()),  # unknown drug, text only
        _field(_field(_field(base, b"RXR", 1, c), b"RXA", 20, c), b"RXA", 21, MRN.encode()),
        _field(_field(base, b"RXR", 4, c), b"TQ1", 13, BIRTH.encode() + b"^min"),
        _field(base, b"TQ1", 13, c + b"^" + c),
        _field(base, b"MSH", 9, f"{NAME}^{MRN}".encode()),  # unsupported type
        _field(base, b"MSH", 18, c),  # unknown character set on 7-bit bytes: read as ASCII, taken (noted)
        _field(base, b"MSH", 18, b"ASCII").replace(c, "ZZCANARY\u00e9".encode("latin-1"), 1),  # bytes not ASCII
        base.replace(b"\rRXA|", b"\rRXA|").replace(b"RXR|", b"RXA|0|1|20261124083000-0500||11124^x^RXNORM\rRXR|", 1),
        base.split(b"\r", 1)[1],  # no MSH: starts with PID
        f"{NAME}|{MRN}|{BIRTH}".encode(),  # not a segment at all
        _field(_field(adt, b"PV1", 2, c), b"PV1", 45, BIRTH.encode()),  # discharge: class and time
        _field(adt, b"PV1", 45, c),
        _field(_field(adt, b"PV1", 19, b""), b"PV1", 2, b"P"),
        base.replace(b"ORC|RE|", f"ORC|RE|{NAME}\r".encode(), 1),  # a segment id that is a name
    ]


def _assert_clean(what: str, text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, f"{canary} in {what}: {text[:400]}"


async def test_canary_patient_data_never_reaches_acks_reasons_logs_or_output(kafka, caplog, capsys, tmp_path):
    # the product's own loggers at DEBUG; libraries at the production level (INFO): aiokafka's DEBUG
    # logs every record it sends, dead letters' raw included
    caplog.set_level(logging.INFO)
    for name in ("gateways", "feeds", "streams", "infusion_validator", "hl7", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    settings, bridge = kafka
    messages = canary_messages()
    files = []
    for n, raw in enumerate(messages):
        (tmp_path / f"m{n}.hl7").write_bytes(raw)
        files.append(str(tmp_path / f"m{n}.hl7"))
    oversize = _canary() + b"NTE|2||" + (f"{NAME} {MRN} {BIRTH} " * 60_000).encode() + b"\r"
    metrics = FeedMetrics()
    bridge.on_rejected = metrics.observe_rejection
    async with listening(bridge, max_bytes=1_048_576, metrics=metrics) as (_, port):
        # the sender's output (what an analyst sees) ...
        assert await send_hl7("127.0.0.1", port, files) == 2
        # ... and every ACK on the wire, including the over-size one and bytes outside a block
        acks = await exchange(port, *(framed(m) for m in messages), framed(oversize))
        acks += await exchange(port, f"{NAME} {MRN} {BIRTH}\r\n".encode())
    out = capsys.readouterr()
    assert len(acks) == len(messages) + 2
    taken = 2  # the first message, and the one with an unknown MSH-18 on 7-bit bytes
    assert [msa(a)[1] for a in acks].count("AA") == taken
    for ack in acks:
        _assert_clean("an ACK", ack.decode("utf-8", "replace"))
    _assert_clean("the sender's output", out.out + out.err)
    letters = await dead_letters(settings, 2 * (len(messages) - taken) + 1)
    assert len(letters) == 2 * (len(messages) - taken) + 1
    for letter in letters:
        _assert_clean("a dead letter's reason", orjson.dumps({k: v for k, v in letter.items() if k != "raw"}).decode())
        assert len(letter["raw"]) < 2100
    assert any(NAME in letter["raw"] for letter in letters)  # the input is kept where it belongs
    _assert_clean("the logs", caplog.text + " ".join(str(r.args) for r in caplog.records))
    exposed = generate_latest(metrics.registry).decode()  # what /metrics serves: counted, never quoted
    _assert_clean("the metrics", exposed)
    assert sum(s.value for s in metrics.answers.collect()[0].samples if s.name.endswith("_total")) == 2 * len(messages) + 1
    assert f'iv_feed_answers_total{{code="AA",feed="hl7"}} {2.0 * taken}' in exposed  # the taken ones, sent twice
    assert 'iv_feed_rejections_total{feed="hl7-mllp",reason="unknown_drug"}' in exposed
