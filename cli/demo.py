"""`infusion-validator demo`: the whole product on one machine.

Starts the embedded broker, creates the topics, starts the worker, the nursing worklist page and
the HL7 (MLLP) and FHIR feeds, streams a simulated hospital day into the input topics at an
accelerated clock, shows live progress from the output topics; then what a user reads: sample charge
lines with their explanations, the nurses' alerts and the coders' findings apart (raised, resolved,
open), the worklist's address and a coder's report of the day; then keeps listening, printing the
charges and alerts of whatever arrives through HL7 or FHIR, until Ctrl-C stops everything.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cli.report import Report, build, load_fee_schedule
from cli.report_csv import Rows
from cli.report_html import render
from feeds import DrugClasses
from gateways import worklist as worklist_page
from simulator import simulate
from gateways import fhir_http, mllp
from streams.faust_runtime.app import build_app
from cli.batch import BatchStats
from gateways.bridge import Bridge
from streams.broker import EmbeddedBroker, free_port
from streams.config import from_env
from streams.feed import SimClock, feed, occurred
from streams.kafka import client_kwargs
from streams.metrics import Metrics
from streams.summary import summary
from streams.topics import create_topics

PUMP_SHARE = 0.5  # of the infusions run on a pump, the share whose pump reports (simulator/pumps.py)
QUIET_SECONDS = 3.0  # after the last input, outputs must be quiet this long before the summary


def say(text: str) -> None:
    print(text, flush=True)


HL7_PORT, FHIR_PORT, WORKLIST_PORT = 2575, 8080, 8090  # the usual ones; a free port when taken
FEES = Path("samples/fee-schedule-illustrative.csv")  # made-up amounts, labelled so in the report
CHARGEMASTER = Path("samples/chargemaster-illustrative.csv")  # made-up charge codes, labelled so
REPORT = Path(tempfile.gettempdir()) / "infusion-validator-demo-report.html"  # and its .csv beside it


async def run_demo(encounters: int, seed: int, speed: float, partitions: int, metrics_port: int | None,
                   exit_after_day: bool = False) -> int:
    logging.basicConfig(level=logging.ERROR, force=True)  # faust is chatty; the demo prints its own progress
    # Two days back: the whole simulated span (late documentation included) stays in the past,
    # which the validator insists on (events dated in the future are rejected).
    day = dt.date.today() - dt.timedelta(days=2)
    # Half the infusions run on a pump report through it (IHE PCD): the pump evidence alerts.
    lines = [line.encode() for line in simulate(encounters=encounters, seed=seed, day=day, bad_line_rate=0.002,
                                                pump_share=PUMP_SHARE)]
    first = min(t for line in lines if (t := occurred(line)) is not None)
    clock = SimClock(first - 60, speed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    say(f"Simulated {encounters:,} encounters of {day}: {len(lines):,} events. Starting the embedded broker...")
    with EmbeddedBroker(log_dir=tempfile.gettempdir()) as broker, tempfile.TemporaryDirectory() as data:
        settings = from_env({}, bootstrap_servers=broker.bootstrap, partitions=partitions, data_dir=data,
                            tick_seconds=1.0, metrics_port=metrics_port or free_port())
        await create_topics(settings, log=lambda _: None)
        metrics = Metrics()
        server = metrics.serve(settings.metrics_port, "127.0.0.1")
        app = build_app(settings, metrics, clock=clock)
        say(f"Broker on {broker.bootstrap}; {len(settings.topics.all)} topics of {partitions} partitions. "
            "Starting the worker (joining its consumer group takes a few seconds)...")
        await app.start()
        producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
        consumer = AIOKafkaConsumer(*settings.topics.outputs, **client_kwargs(settings),
                                    auto_offset_reset="earliest", group_id=None)
        await producer.start()
        await consumer.start()
        stats = BatchStats()
        fed: set[str] = set()  # encounters that came in through HL7 or FHIR: their outputs are printed
        bridge = Bridge(producer, settings.topics, on_events=lambda events: fed.update(e["encounter_id"] for e in events))
        drugs = DrugClasses.load()
        hl7_port, fhir_port = _port(HL7_PORT), _port(FHIR_PORT)
        hl7_server = await mllp.serve(bridge, drugs, "127.0.0.1", hl7_port)
        fhir_runner = await fhir_http.serve(bridge, drugs, "127.0.0.1", fhir_port)
        say(f"HL7 v2 MLLP listener on 127.0.0.1:{hl7_port}, FHIR endpoint on http://127.0.0.1:{fhir_port}/fhir "
            "(their charges and alerts are printed as they come).")
        board, board_stop = worklist_page.Worklist(), asyncio.Event()
        worklist_runner = await worklist_page.serve(board, "127.0.0.1", _port(WORKLIST_PORT))
        worklist_url = f"http://127.0.0.1:{worklist_runner.addresses[0][1]}/"
        board_reader = asyncio.create_task(worklist_page.consume(settings, board, board_stop))
        say(f"Nursing worklist: {worklist_url} (open it now: documentation problems appear and leave as the day runs)")
        try:
            say(f"Streaming the day at {speed:,.0f}x (one simulated hour every {3600 / speed:.1f} s); Ctrl-C stops.")
            clock.start()
            sent = {"n": 0}
            feeder = asyncio.create_task(feed(producer, lines, settings.topics, clock,
                                              progress=lambda n: sent.__setitem__("n", n)))
            outputs: list[bytes] = []
            await _watch(consumer, stats, feeder, stop, clock, sent, app.processor, fed, outputs)
            if stop.is_set():
                say("Stopped by request.")
                feeder.cancel()
            elif feeder.exception():
                raise feeder.exception()
            stats.lines = sent["n"]
            stats.dead_letters = stats.records["dead letter"]
            stats.duplicates = app.processor.book.duplicates
            stats.events = stats.lines - stats.dead_letters - stats.duplicates
            stats.open_encounters = app.processor.book.open_count
            say("\n" + summary(stats, alerts=False))  # the alerts follow, by audience with open counts
            day = write_report(outputs)  # one reading of the day's outputs, for the summary and the report
            say("\n" + day_summary(day))
            say(f"\nNursing worklist: {worklist_url}")
            say(f"Coder's report of the day: {REPORT} (every encounter's rows in {REPORT.with_suffix('.csv')}). "
                "For a lookback, run last month's MAR export through `infusion-validator code` and `report`.")
            say(write_billing(outputs))
            say(f"Metrics: http://127.0.0.1:{settings.metrics_port}/metrics (served until the demo exits)")
            if not (exit_after_day or stop.is_set()):
                say(f"\nStill running. Send HL7 v2 (e.g. `.venv/bin/infusion-validator hl7 send --port {hl7_port} "
                    f"samples/hl7/scenario/*.hl7`) or POST FHIR JSON to http://127.0.0.1:{fhir_port}/fhir; "
                    "Ctrl-C stops.")
                await _follow(consumer, stats, stop, fed)
        finally:
            board_stop.set()
            await board_reader
            await worklist_runner.cleanup()
            hl7_server.close()
            await fhir_runner.cleanup()
            await consumer.stop()
            await producer.stop()
            await app.stop()
            server.shutdown()
    say("Worker, broker and metrics server stopped.")
    return 0


def _port(preferred: int) -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


async def _watch(consumer, stats: BatchStats, feeder, stop, clock, sent, processor, fed: set,
                 outputs: list[bytes]) -> None:
    """Count output records and print progress until the feed is done and outputs are quiet."""
    last_output = time.monotonic()
    next_report = time.monotonic()
    while not stop.is_set():
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        for records in batch.values():
            for message in records:
                record = orjson.loads(message.value)
                stats.count(record)
                outputs.append(message.value)
                _show_fed(record, fed)
                last_output = time.monotonic()
        if time.monotonic() >= next_report:
            next_report = time.monotonic() + 2
            _progress(stats, clock, sent["n"], processor)
        if feeder.done() and time.monotonic() - last_output > QUIET_SECONDS:
            _progress(stats, clock, sent["n"], processor)
            return


async def _follow(consumer, stats: BatchStats, stop, fed: set) -> None:
    """After the day: print the outputs of what arrives through HL7 or FHIR, until Ctrl-C."""
    while not stop.is_set():
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for message in records:
                record = orjson.loads(message.value)
                stats.count(record)
                _show_fed(record, fed)


def _show_fed(record: dict, fed: set) -> None:
    """One line per output of an HL7/FHIR-fed encounter, and per feed message rejected."""
    kind = record["kind"]
    if kind == "dead_letter" and str(record.get("source", {}).get("feed", "")).startswith(("hl7", "fhir")):
        say(f"  <- {record['source']['feed']} rejected ({record['category']}): {record['reason']}")
    elif record.get("encounter_id") in fed and kind == "charge":
        modifiers = "".join(f" -{m}" for m in record["modifiers"])
        say(f"  <- {record['encounter_id']} charge {record['action']} {record['cpt']}{modifiers} x{record['units']}"
            f" {record['service_date']}: {record['explanation']}")
    elif kind == "alert" and (record.get("encounter_id") in fed or record["code"] == "DRUG_CLASS_UNKNOWN"):
        say(f"  <- {record['encounter_id']} alert {record['state']} {record['code']} ({record['severity']}):"
            f" {record['message']}")


def day_summary(day: Report) -> str:
    """What a user reads after the day: three charge lines with their explanations, then the nurses'
    alerts and the coders' findings apart, each code with raised, resolved and still open."""
    samples = []
    for line in day.totals.examples.values():
        modifiers = "".join(f"-{m}" for m in line["modifiers"])
        samples.append(f"  {line['encounter_id']} {line['cpt']}{modifiers} x{line['units']}: {line['explanation']}")
    parts = ["Sample charge lines (net; each explains itself against the chart):\n" + "\n".join(samples or ["  none"])]
    for who, title in (("nursing", "Nursing documentation alerts (the worklist shows the open ones)"),
                       ("coding", "Coding findings (pre-bill audit and coding notes; in the report)")):
        parts.append(_alert_table(title, day.totals.alerts.get(who, {})))
    pumps = day.totals.pumps
    parts.append(f"Infusion pumps ({PUMP_SHARE:.0%} of pump infusions report): {pumps['stop_known_to_pump']:,} open "
                 f"stop-time alert(s) name the pump's stop, which the nurse can document (policy pump_stop_times = "
                 f"\"fallback\" would code on it); {pumps['uncharted']:,} infusion(s) the pump delivered and nobody "
                 f"charted; {pumps['mismatch']:,} chart/pump time mismatch(es), {pumps['mismatch_changes_codes']:,} "
                 "changing the codes or units.")
    return "\n\n".join(parts)


def _alert_table(title: str, codes: dict[str, Counter]) -> str:
    """`codes`: alert code -> alerts whose last record left them open / resolved."""
    if not codes:
        return f"{title}: none"
    width = max(len("alert"), *map(len, codes))
    rows = [f"  {'alert':<{width}}  {'raised':>7}  {'resolved':>8}  {'open':>6}"]
    total = Counter()
    for code in sorted(codes):
        n = codes[code]
        total.update(n)
        rows.append(f"  {code:<{width}}  {n['open'] + n['resolved']:>7,}  {n['resolved']:>8,}  {n['open']:>6,}")
    rows.append(f"  {'total':<{width}}  {total['open'] + total['resolved']:>7,}  {total['resolved']:>8,}  {total['open']:>6,}")
    return title + "\n" + "\n".join(rows)


def write_report(outputs: list[bytes]) -> Report:
    """The coder's report of the day's outputs and its CSV (what `infusion-validator report` writes)."""
    fees = load_fee_schedule(str(FEES)) if FEES.exists() else None
    csv_path = REPORT.with_suffix(".csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as out:
        report = build([("the demo's simulated day", outputs, None)], fees, rows=Rows(out))
    REPORT.write_text(render(report, fees, csv_path.name), encoding="utf-8")
    return report


def write_billing(outputs: list[bytes]) -> str:
    """The day's charges as the billing system would take them (what `billing export` writes), beside
    the report, by the illustrative chargemaster; says where and how many."""
    from billing.dft import Interface
    from cli.billing import export
    from gateways.billing import load_chargemaster

    path = REPORT.with_name("infusion-validator-demo-charges.hl7")
    with open(path, "wb") as out:
        stats = export(((f"output {n}", line) for n, line in enumerate(outputs, 1)), load_chargemaster(str(CHARGEMASTER)),
                       Interface(), out, io.StringIO())
    return (f"Billing interface file: {path} ({stats.messages} HL7 DFT^P03 messages: {stats.posts} charges, "
            f"{stats.reversals} credits, by {CHARGEMASTER}; {stats.held} held). `billing send` sends them live.")


def _progress(stats: BatchStats, clock, sent: int, processor) -> None:
    now = dt.datetime.fromtimestamp(clock()).strftime("%a %H:%M")
    r = stats.records
    say(f"  [{now}] events in {sent:>7,} | charges posted {r['charge post']:>6,} reversed {r['charge reverse']:>4,}"
        f" | alerts raised {r['alert raised']:>5,} resolved {r['alert resolved']:>5,}"
        f" | dead letters {r['dead letter']:>3,} | open encounters {processor.book.open_count:>5,}")


def main(encounters: int, seed: int, speed: float, partitions: int, metrics_port: int | None,
         exit_after_day: bool = False) -> int:
    try:
        return asyncio.run(run_demo(encounters, seed, speed, partitions, metrics_port, exit_after_day))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(300, 7, 3600, 4, None))
