# Shared by scripts/demo and scripts/test: install what is missing, then get out of the way.
# Sourced, not run. Works as root on a fresh Debian machine (CI) and as a sudoer on a laptop.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive
VAR="${CARNET_VAR_DIR:-$ROOT/var}"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

log() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages that are not installed yet; `apt-get update` only when needed.
APT_UPDATED=0
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A Python 3.11+ with venv, a .venv, and requirements.txt installed into it (skipped when unchanged).
python_ensure() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        apt_ensure python3 python3-venv
        PYTHON=python3
    fi
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
        || { warn "Carnet needs Python 3.11 or newer (found $("$PYTHON" --version))"; exit 1; }
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_ensure python3-venv
    fi
    if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating $VENV"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.requirements.sha256" want
    want="$(sha256sum requirements.txt | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "pip install -r requirements.txt"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
        echo "$want" >"$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}

# The clinical rules compiled by mypyc for the current sources (scheduling/rules/_native.py): the
# engine runs ~1.45x faster. Needs a C compiler and Python's headers, installed when missing.
# Never fatal: without the build the plain rules run, and a stale build is never used.
# CARNET_NATIVE_RULES=0 skips the build (and turns the compiled rules off at run time).
native_rules_ensure() {
    [ "${CARNET_NATIVE_RULES:-1}" != 0 ] || return 0
    python -m scheduling.compile_rules status >/dev/null 2>&1 && return 0
    command -v gcc >/dev/null 2>&1 || apt_ensure gcc libc6-dev
    python -c 'import os, sysconfig; assert os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
        2>/dev/null || apt_ensure python3-dev
    log "compile the rules (mypyc)"
    python -m scheduling.compile_rules build || warn "the rules run as plain Python"
}

# The folders the filesystem Celery broker reads and writes (backend/settings.py).
broker_dirs_ensure() {
    mkdir -p "$VAR/broker/out" "$VAR/broker/processed" "$VAR/broker/control"
}

# A free TCP port on 127.0.0.1, the preferred one when it is free.
free_port() {
    "$PYTHON" - "$1" <<'PY'
import socket, sys
preferred = int(sys.argv[1])
for port in (preferred, 0):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
PY
}
