"""Deployment and monitoring files (deploy/, docs/operations.md): they parse, refer to things that exist,
run real CLI commands, use real IV_* settings and query only metrics the worker exports. Fast: no broker,
no Docker, no cluster; promtool runs the alert-rule unit tests when it is installed."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from cli.main import build_parser
from streams.config import Settings, Topics
from gateways.ops import BillingMetrics, FeedMetrics, WorklistMetrics
from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
RULES = DEPLOY / "prometheus" / "rules.yaml"
RULES_TEST = DEPLOY / "prometheus" / "rules.test.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "infusion-validator.json"
OPERATIONS = ROOT / "docs" / "operations.md"
JOB = "infusion-validator"  # the workers' scrape job
EDGE_JOB = "infusion-validator-edge"  # the feeds' and the worklist's
DEFAULT_PORT = Settings().metrics_port


def load(path: Path):
    return yaml.safe_load(path.read_text())


def k8s_all() -> list[dict]:
    """Every resource the kustomization lists."""
    return [doc for name in load(K8S / "kustomization.yaml")["resources"]
            for doc in yaml.safe_load_all((K8S / name).read_text())]


def k8s_docs(component: str = "worker") -> dict[str, dict]:
    """One component's resources by kind (the worker's by default; app.kubernetes.io/component), with
    the shared ones (no component label: the ConfigMap, the Secrets, first the Kafka one) and the
    topics Job."""
    docs = {}
    for doc in k8s_all():
        label = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if label in (component, None, "topics"):
            docs.setdefault(doc["kind"], doc)
    return docs


EDGE = {"hl7-listener": ["hl7", "listen"], "fhir-endpoint": ["fhir", "serve"], "worklist": ["worklist"],
        "billing-sender": ["billing", "send"]}
COMPOSE_EDGE = {k: v for k, v in EDGE.items() if k != "billing-sender"}  # Compose has no billing system to send to


def compose() -> dict:
    return load(DEPLOY / "compose.yaml")


def parse_cli(argv: list[str]):
    return build_parser().parse_args(argv)  # exits (SystemExit) on anything the CLI does not have


# -- everything parses ---------------------------------------------------------------------------

def test_every_yaml_and_json_file_parses():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 12
    for path in files:
        assert [d for d in yaml.safe_load_all(path.read_text()) if d is not None], f"{path} is empty"
    json.loads(DASHBOARD.read_text())


# -- settings --------------------------------------------------------------------------------------

def _settings_env() -> set[str]:
    from dataclasses import fields

    names = {f"IV_{f.name.upper()}" for f in fields(Settings) if f.name != "topics"}
    names |= {f"IV_TOPIC_{f.name.upper()}" for f in fields(Topics)}
    return names | {"IV_SASL_PASSWORD_FILE"}


def test_every_iv_variable_in_deploy_files_and_runbook_is_a_real_setting():
    known = _settings_env()
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in ("", ".yaml")] + [OPERATIONS]
    used = {(m, p.relative_to(ROOT).as_posix()) for p in files
            for m in re.findall(r"\bIV_[A-Z0-9_]+\b(?!\*)", p.read_text())}
    assert used
    unknown = sorted(f"{name} ({where})" for name, where in used if name not in known)
    assert not unknown, f"not settings of streams.config: {unknown}"


@pytest.mark.parametrize("component", ["worker", *EDGE])
def test_configmap_and_deployment_env_are_settings(component):
    docs, known = k8s_docs(component), _settings_env()
    container = docs.get("StatefulSet", docs.get("Deployment"))["spec"]["template"]["spec"]["containers"][0]
    names = set(docs["ConfigMap"]["data"]) | {e["name"] for e in container["env"]}
    assert names <= known, sorted(names - known)
    assert container["envFrom"] == [{"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}}]


# -- container image -------------------------------------------------------------------------------

def _dockerfile() -> dict[str, list[str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def test_dockerfile_pinned_non_root_console_script_and_healthcheck():
    d = _dockerfile()
    assert len(d["FROM"]) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", d["FROM"][0])
    user = d["USER"][-1].split(":")[0]
    assert user not in ("root", "0") and int(user) > 0  # numeric: Kubernetes can check runAsNonRoot
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(d["ENTRYPOINT"][0]) == ["infusion-validator"] and "infusion-validator" in scripts
    cmd = json.loads(d["CMD"][0])
    assert parse_cli(cmd).command == "worker"
    assert "/healthz" in d["HEALTHCHECK"][0]
    assert any(r.startswith("pip install .") for r in d["RUN"])  # what it installs runs: tests/test_image.py


# -- compose ---------------------------------------------------------------------------------------

def test_compose_services_refer_to_each_other_and_to_files_that_exist():
    services = compose()["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        image = svc["image"]
        if "build" in svc:
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        else:
            tag = image.rsplit(":", 1)[-1]
            assert ":" in image and tag != "latest" and re.search(r"\d", tag), f"{name}: pin {image}"
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft


def test_compose_commands_are_real_cli_commands_in_the_right_order():
    services = compose()["services"]
    ours = {name: parse_cli(svc["command"]) for name, svc in services.items() if "build" in svc}
    topics = [n for n, a in ours.items() if a.command == "topics" and a.topics_command == "create"]
    workers = [n for n, a in ours.items() if a.command == "worker"]
    assert len(topics) == 1 and len(workers) == 2
    edge = {n: svc["command"][:2] for n, svc in services.items() if "build" in svc and n not in topics + workers}
    assert sorted(c[:len(e)] for c in edge.values() for e in COMPOSE_EDGE.values() if c[:len(e)] == e) == sorted(
        COMPOSE_EDGE.values())
    for name in workers + list(edge):
        assert services[name]["depends_on"][topics[0]] == {"condition": "service_completed_successfully"}
    assert services[topics[0]]["depends_on"]["kafka"] == {"condition": "service_healthy"}
    for name in edge:  # published on the host's loopback only: a developer's stack without TLS or sign-on
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_compose_prometheus_scrapes_the_workers_and_loads_the_rules():
    services = compose()["services"]
    config = load(DEPLOY / "prometheus" / "prometheus.yaml")
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert mounts["./prometheus/rules.yaml"] in config["rule_files"]
    assert mounts["./prometheus/prometheus.yaml"] in " ".join(services["prometheus"]["command"])
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert set(jobs) == {JOB, EDGE_JOB}
    ours = {n: s["command"] for n, s in services.items() if "build" in s and s["command"][0] != "topics"}
    workers = {n for n, c in ours.items() if c == ["worker"]}
    assert {t.split(":")[0] for t in jobs[JOB]} == workers
    assert {t.split(":")[0] for t in jobs[EDGE_JOB]} == set(ours) - workers
    assert {int(t.split(":")[1]) for t in jobs[JOB] + jobs[EDGE_JOB]} == {DEFAULT_PORT}


def test_compose_grafana_is_provisioned_with_the_dashboard():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "infusion-validator.yaml")
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    (datasource,) = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


# -- Kubernetes ------------------------------------------------------------------------------------

def test_kustomization_lists_every_manifest_and_each_exists():
    resources = load(K8S / "kustomization.yaml")["resources"]
    assert all((K8S / r).is_file() for r in resources)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == on_disk
    assert {"StatefulSet", "ConfigMap", "Secret", "PodDisruptionBudget", "Service", "Job"} <= set(k8s_docs())


def test_worker_statefulset_probes_security_and_its_own_volume():
    docs = k8s_docs()
    deployment = docs["StatefulSet"]
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    port = int(env.get("IV_METRICS_PORT", DEFAULT_PORT))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert deployment["spec"]["replicas"] == 2
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == port
    assert parse_cli(c["args"]).command == "worker"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert 20 <= pod["terminationGracePeriodSeconds"] <= 60
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    # The table store on a volume of each worker's own, kept across restarts and rolling updates; the
    # static membership id is the stable pod name.
    (claim,) = deployment["spec"]["volumeClaimTemplates"]
    assert mounts[env["IV_DATA_DIR"]] == claim["metadata"]["name"] and mounts[env["IV_DATA_DIR"]] not in volumes
    assert docs["ConfigMap"]["data"]["IV_STORE"] == "rocksdb://"
    instance = next(e for e in c["env"] if e["name"] == "IV_GROUP_INSTANCE_ID")
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert deployment["spec"]["serviceName"] == docs["Service"]["metadata"]["name"]
    secret_dir, _, _ = env["IV_SASL_PASSWORD_FILE"].rpartition("/")
    assert volumes[mounts[secret_dir]]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert Path(env["IV_SASL_PASSWORD_FILE"]).name in docs["Secret"]["stringData"]


def test_secrets_hold_placeholders_only():
    secrets = [d for d in k8s_all() if d["kind"] == "Secret"]
    assert len(secrets) == 4
    for secret in secrets:
        assert "data" not in secret  # no base64 that could hide a real value
        assert all("PLACEHOLDER" in v for v in secret["stringData"].values())
    assert "PLACEHOLDER VALUES ONLY" in (K8S / "secret.yaml").read_text()
    mounted = {v["secret"]["secretName"] for d in k8s_all() if d["kind"] in ("Deployment", "StatefulSet")
               for v in d["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    referenced = {e["valueFrom"]["secretKeyRef"]["name"] for d in k8s_all() if d["kind"] in ("Deployment", "StatefulSet")
                  for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", []) if "valueFrom" in e
                  and "secretKeyRef" in e["valueFrom"]}
    assert mounted | referenced == {s["metadata"]["name"] for s in secrets}


def test_topics_job_pdb_and_service_match_the_workers():
    docs = k8s_docs()
    pod_labels = docs["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    job = docs["Job"]["spec"]["template"]["spec"]
    args = parse_cli(job["containers"][0]["args"])
    assert (args.command, args.topics_command) == ("topics", "create")
    assert job["securityContext"]["runAsNonRoot"] is True
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    service = docs["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == DEFAULT_PORT
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_strimzi_topics_match_the_product_topics():
    topics = list(yaml.safe_load_all((K8S / "strimzi" / "kafkatopics.yaml").read_text()))
    names = [t["spec"]["topicName"] for t in topics]
    app = Settings().app_id
    assert names == [*Topics().all, f"{app}-encounters-changelog", f"{app}-__assignor-__leader"]
    assert len({t["spec"]["partitions"] for t in topics[:-1]}) == 1  # co-partitioned


# -- metrics used by rules and dashboard -----------------------------------------------------------

def exported_names() -> set[str]:
    """Names as Prometheus stores them, of every process's registry (the worker's with faust's, the
    feeds', the worklist's): a Counter family 'x' is exposed as x_total, a Histogram as
    x_bucket/x_count/x_sum (prometheus_client's collect() names families without those suffixes)."""
    worker = Metrics(CollectorRegistry()).registry
    FaustMetrics.create(worker, "faust")
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"), "gauge": ("",)}
    return {fam.name + s for registry in (worker, FeedMetrics().registry, WorklistMetrics().registry, BillingMetrics().registry)
            for fam in registry.collect() for s in suffixes.get(fam.type, ("",))} | {"up"}


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool"}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    tokens = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr)  # not a function call
    return {t for t in tokens if t not in _KEYWORDS}


def rule_exprs() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in load(RULES)["groups"] for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]


def test_metric_name_extraction():
    assert metric_names('sum by (topic) (rate(iv_x_total{job="a",code="B"}[5m])) / on() up or vector(0)') == {
        "iv_x_total", "up"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(h_bucket[$__rate_interval])))") == {"h_bucket"}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_rules_and_dashboard_query_only_exported_metrics_of_the_worker_job(source):
    exprs = list(rule_exprs().values()) if source == "rules" else dashboard_exprs()
    exported, used = exported_names(), set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        used |= names
        jobs = set(re.findall(r'job="([^"]*)"', expr))
        assert len(jobs) == 1 and jobs <= {JOB, EDGE_JOB}, f"select job={JOB!r} or {EDGE_JOB!r}: {expr}"
    assert not used - exported, f"not exported by any process: {sorted(used - exported)}"


# -- alert rules: annotations, runbook, tests ------------------------------------------------------

def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_rule_has_severity_summary_description_and_a_runbook_section():
    anchors = _anchors(OPERATIONS.read_text())
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            notes = rule["annotations"]
            assert notes["summary"] and notes["description"]
            doc, _, anchor = notes["runbook_url"].partition("#")
            assert doc == "docs/operations.md" and anchor == rule["alert"].lower(), notes["runbook_url"]
            assert anchor in anchors, f"docs/operations.md has no section {anchor}"


def test_every_doc_link_in_deploy_files_has_its_section():
    anchors = _anchors(OPERATIONS.read_text())
    links = {a for p in DEPLOY.rglob("*") if p.is_file() for a in re.findall(r"operations\.md#([\w-]+)", p.read_text())}
    assert links and not links - anchors, sorted(links - anchors)


def test_rule_tests_cover_every_alert_firing_and_not_firing():
    cases = [c for t in load(RULES_TEST)["tests"] for c in t["alert_rule_test"]]
    for alert in rule_exprs():
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: test it firing and not firing"


def test_dashboard_has_the_panels_of_the_runbook():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"].lower() for p in panels)
    for needed in ("throughput", "lag", "latency", "open encounters", "open administrations", "alerts",
                   "charges", "dead letters", "rebalances", "feed answers", "feed rejections",
                   "feed answer latency", "feed connections", "worklist", "billing"):
        assert needed in titles, needed
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels if p["type"] != "row")
    assert any("iv_discharge_to_charge_seconds_bucket" in e for e in dashboard_exprs())


def test_promtool_checks_and_unit_tests_pass():
    promtool = shutil.which("promtool")
    if promtool is None:
        message = ("promtool is not installed: `apt-get install prometheus` (Debian/Ubuntu) or the prometheus "
                   "release archive from https://prometheus.io/download/ puts it on PATH")
        if os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("IV_REQUIRE_PROMTOOL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        done = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def _admitted(policy: dict) -> set[tuple[str, int]]:
    """(namespace label, port) pairs a NetworkPolicy admits."""
    return {(k, p["port"]) for r in policy["spec"]["ingress"] for p in r["ports"]
            for k, v in r["from"][0]["namespaceSelector"]["matchLabels"].items() if v == "allowed"}


def test_network_policies_admit_only_prometheus_and_each_process_s_own_clients():
    expected = {"worker": {("infusion-validator/scrape", DEFAULT_PORT)},
                "hl7-listener": {("infusion-validator/scrape", DEFAULT_PORT), ("infusion-validator/feeds", 2575)},
                "fhir-endpoint": {("infusion-validator/scrape", DEFAULT_PORT), ("infusion-validator/feeds", 8080)},
                "worklist": {("infusion-validator/scrape", DEFAULT_PORT), ("infusion-validator/worklist", 4180)},
                "billing-sender": {("infusion-validator/scrape", DEFAULT_PORT)}}  # it connects out only
    policies = [d for d in k8s_all() if d["kind"] == "NetworkPolicy"]
    assert len(policies) == len(expected)
    for policy in policies:
        component = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert _admitted(policy) == expected[component], component
    env = {e["name"]: e.get("value") for e in k8s_docs()["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["IV_METRICS_HOST"] == "0.0.0.0"  # in a pod; the product's own default is loopback


@pytest.mark.parametrize("component", list(EDGE))
def test_feed_and_worklist_deployments_run_their_command_with_probes_limits_and_a_service(component):
    docs = k8s_docs(component)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    ours = [c for c in pod["containers"] if c["image"].startswith("infusion-validator:")]
    (c,) = ours
    assert parse_cli(c["args"]) and c["args"][:len(EDGE[component])] == EDGE[component]
    env = {e["name"]: e.get("value") for e in c["env"]}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert int(env["IV_METRICS_PORT"]) == ports["metrics"] == DEFAULT_PORT and env["IV_METRICS_HOST"] == "0.0.0.0"
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, (component, probe)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    service = docs["Service"]
    assert service["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    targets = {p["targetPort"] for p in service["spec"]["ports"]}
    assert "metrics" in targets and service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    if component == "worklist":  # the page only on the pod's loopback; the Service reaches the sign-on proxy
        assert parse_cli(c["args"]).host == "127.0.0.1"
        (proxy,) = [p for p in pod["containers"] if p is not c]
        assert any(a.startswith("--upstream=http://127.0.0.1:") for a in proxy["args"])
        assert targets == {"metrics", "https"} and "https" in {p["name"] for p in proxy["ports"]}
    elif component == "billing-sender":  # one connection to the billing system, mutual TLS, the chargemaster mounted
        assert docs["Deployment"]["spec"]["replicas"] == 1 and docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
        assert env["IV_BILLING_TLS"] == "on" and env["IV_BILLING_TLS_CERTFILE"] and targets == {"metrics"}
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert str(Path(env["IV_BILLING_CHARGEMASTER_FILE"]).parent) in mounts
    else:
        host = {"hl7-listener": "IV_HL7", "fhir-endpoint": "IV_FHIR"}[component]
        assert env[f"{host}_HOST"] == "0.0.0.0" and env[f"{host}_TLS_CLIENT_CAFILE"]  # mutual TLS in the base
