#!/usr/bin/env bash
# Quickstart: builds harmony and walks through the example repository in tenants/.
# Safe to run twice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

need_rust
say "building harmony (cargo build --release)"
cargo build --release --locked --bin harmony
harmony() { "$ROOT/target/release/harmony" "$@"; }

say "harmony check --repo tenants: type-check the example repository"
harmony check --repo tenants

say "harmony fmt --check --repo tenants: the example is canonically formatted"
harmony fmt --check --repo tenants

say "harmony graph --repo tenants --format mermaid: the units and their order"
harmony graph --repo tenants --format mermaid

say "harmony template: render the web chart exactly like helm template"
harmony template web tenants/charts/web --namespace acme-prod | sed -n 1,40p

say "done: see README.md for the tour"
