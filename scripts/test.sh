#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
# Safe to run twice. `.ci/run` calls exactly this.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

need_rust
apt_need git git
# Helm's own engine (Go SDK), an oracle for tests that compare with Helm: never a runtime dependency.
venv_need helm-python-sdk
# podman, runc, busybox-static, containers.conf and nats-server for the agent and fleet tests.
"$ROOT/scripts/install-test-deps.sh" >/dev/null

say "running the test suite (cargo test --workspace)"
# CI=true makes insta fail on a changed snapshot instead of writing a .snap.new.
cargo test --workspace --locked
say "all tests passed"
