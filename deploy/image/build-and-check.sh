#!/usr/bin/env bash
# Build deploy/Dockerfile for real with podman and check the image starts, on a machine with no Docker
# engine and no image registry: the base `python:3.11.11-slim-bookworm` is stood in for by a rootfs
# made from Debian's packages (mmdebstrap: Debian's Python 3.11, pip, passwd), imported under that
# name so `FROM` resolves without a pull. Run from the repository root (tests/test_image.py runs it in
# `make test-full`):
#   bash deploy/image/build-and-check.sh                  # build, then --version, worker --help, id
#   IV_BOOTSTRAP_SERVERS=127.0.0.1:9092 bash deploy/image/build-and-check.sh   # also start the worker
# Installs podman, buildah, mmdebstrap and runc with apt-get when missing (as root). IV_IMAGE_WORK is
# where the base rootfs and podman's settings go (default: a temporary directory).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${IV_IMAGE_WORK:-$(mktemp -d)}
BASE=docker.io/library/python:3.11.11-slim-bookworm
TAG=localhost/infusion-validator:check
t0=$SECONDS; step() { echo "== [$((SECONDS - t0)) s] $*"; }

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null || ! command -v runc >/dev/null; then
  step "apt-get install podman buildah mmdebstrap runc"
  [ "$(id -u)" = 0 ] || { echo "podman, mmdebstrap and runc are needed: apt-get install podman buildah mmdebstrap runc uidmap"; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman buildah mmdebstrap runc uidmap \
    fuse-overlayfs slirp4netns >/dev/null
fi

# Podman's own settings, not /etc/containers': runc (crun refuses a hybrid cgroup v1+v2 host),
# rlimits within the host's hard limits (podman's defaults exceed them without CAP_SYS_RESOURCE).
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$WORK/containers.conf

if ! podman image exists "$BASE"; then
  step "base rootfs from Debian packages (mmdebstrap), imported as $BASE"
  mmdebstrap --quiet --variant=apt --format=tar \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    bookworm "$WORK/base.tar" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
  podman import -q --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$WORK/base.tar" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
fi

step "podman build -f deploy/Dockerfile (context: the checkout minus deploy/Dockerfile.dockerignore)"
# The machine's CA bundle over the image's during RUN steps only: TLS to PyPI may pass a proxy whose
# CA only the host trusts. Nothing of it stays in the image.
podman build -q --pull=never --network=host --format docker \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  -f deploy/Dockerfile -t "$TAG" "$ROOT" >/dev/null
RUN=(podman run --rm --network=host --no-healthcheck)  # no systemd here for the healthcheck's timer

step "run"
"${RUN[@]}" "$TAG" --version
"${RUN[@]}" "$TAG" worker --help | head -1
echo "uid=$("${RUN[@]}" --entrypoint id "$TAG" -u)"
podman image inspect --format 'user {{.Config.User}}, entrypoint {{json .Config.Entrypoint}}, cmd {{json .Config.Cmd}}' "$TAG"

if [ -n "${IV_BOOTSTRAP_SERVERS:-}" ]; then
  step "topics create and the worker, in the image, against $IV_BOOTSTRAP_SERVERS"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  ENV=(-e IV_BOOTSTRAP_SERVERS -e IV_APP_ID="iv-image-$$" -e IV_PARTITIONS=2 -e IV_METRICS_PORT="$port"
       -e IV_LOG_LEVEL=warning)
  for t in STARTED STOPPED VOIDED DISCHARGED DISCHARGE_CANCELLED SUBMITTED CHARGES CHARGEITEMS ALERTS DEAD_LETTERS TICKS REPARTITION; do
    ENV+=(-e "IV_TOPIC_$t=image$$.${t,,}")
  done
  "${RUN[@]}" "${ENV[@]}" "$TAG" topics create >/dev/null
  podman run -d --network=host --no-healthcheck --name "iv-check-$$" "${ENV[@]}" "$TAG" worker >/dev/null  # kept: its exit status
  trap 'podman rm -f "iv-check-$$" >/dev/null 2>&1 || true' EXIT
  for _ in $(seq 1 90); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)" 2>/dev/null; then
      echo "worker ready: /readyz 200"; break
    fi
    sleep 1
  done
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=2)"
  podman stop -t 30 "iv-check-$$" >/dev/null
  echo "worker stopped: exit $(podman inspect --format '{{.State.ExitCode}}' "iv-check-$$")"
fi
step "done"
