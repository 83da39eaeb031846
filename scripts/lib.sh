# Shared helpers for the set-up scripts. Sourced, not run.
# Every step is idempotent: running a script twice changes nothing the second time.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Rust toolchain must come from rustup (Debian's cargo is too old for edition 2024).
need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust $(grep -m1 rust-version "$ROOT/Cargo.toml" | cut -d'"' -f2) or newer with rustup (https://rustup.rs), then re-run"
    # A C compiler: Rust's linker driver, and aws-lc-sys compiles AWS-LC (ADR 0012).
    apt_need cc gcc libc6-dev
}

# Debian packages, installed only when a command is missing.
apt_need() { # apt_need COMMAND PACKAGE...
    local cmd="$1"; shift
    command -v "$cmd" >/dev/null 2>&1 || apt_install "$@"
}

apt_install() { # apt_install PACKAGE...
    [ "$(id -u)" = 0 ] || die "missing packages; install with: sudo apt-get install -y $*"
    say "installing $* (apt)"
    if [ -z "${APT_UPDATED:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# A Python virtualenv under .venv with the given PyPI packages.
venv_need() { # venv_need PACKAGE...
    apt_need python3 python3 python3-venv
    if [ ! -x "$VENV/bin/pip" ]; then
        say "creating $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; python3 -m venv "$VENV"; }
    fi
    local missing=()
    for p in "$@"; do
        "$VENV/bin/pip" show -q "${p%%[=<>]*}" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]} (PyPI, into .venv)"
        "$VENV/bin/pip" install -q "${missing[@]}"
    fi
}
