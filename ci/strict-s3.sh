#!/usr/bin/env bash
# The strict S3 tier: LocalStack in host mode (no Docker), S3 and KMS only, on loopback.
#
#   ci/strict-s3.sh start DIR    build (or reuse) the LocalStack venv, start it on a free
#                                127.0.0.1 port, wait until S3 and KMS are available.
#                                stdout: one line, `export SSE_GUARD_STRICT_ENDPOINT=http://127.0.0.1:PORT`
#                                (so `eval "$(ci/strict-s3.sh start DIR)"` works); progress on stderr.
#                                Writes DIR/localstack.pid, DIR/endpoint, logs to DIR/localstack.log.
#   ci/strict-s3.sh stop DIR     stop the process recorded in DIR/localstack.pid (INT, TERM, KILL).
#   ci/strict-s3.sh status DIR   exit 0 if it answers its health check.
#
# The venv is cached outside DIR, keyed by the pins below, in
#   ${SSE_GUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sse-guard}/localstack-<key>
# so repeated runs on one machine skip the ~1 minute install; a fresh machine builds it.
# LocalStack 2026.3.0 needs Python 3.13 (FIELD-NOTES: 3.11 fails with a SyntaxError); set SSE_GUARD_PY313
# to a python3.13 executable to override the lookup (pyenv's 3.13.0, then python3.13 on PATH).
set -euo pipefail

LOCALSTACK_PINS=(
    "localstack-core[runtime]==2026.3.0"
    "cbor2<6"
    "pyopenssl==24.2.1"
    "cryptography<44"
    "service_identity"
)
START_TIMEOUT="${SSE_GUARD_STRICT_START_TIMEOUT:-90}"   # seconds to wait for the health check

log() { printf '[strict-s3] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() { sed -n '2,16p' "$0" >&2; exit 2; }

[ $# -eq 2 ] || usage
HERE="$(cd "$(dirname "$0")" && pwd)"
cmd="$1"
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"
PIDFILE="$DIR/localstack.pid"
LOGFILE="$DIR/localstack.log"

cache_root="${SSE_GUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sse-guard}"
key="$(printf '%s\n' "${LOCALSTACK_PINS[@]}" | sha256sum | cut -c1-12)"
VENV="$cache_root/localstack-$key"

find_py313() {
    if [ -n "${SSE_GUARD_PY313:-}" ]; then
        echo "$SSE_GUARD_PY313"; return 0
    fi
    local v pv
    if command -v pyenv >/dev/null 2>&1; then
        # 3.13.0 as in the field notes, else the newest 3.13.x pyenv has
        for pv in 3.13.0 $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13\.[0-9]+$' | sort -t. -k3,3nr); do
            v="$(PYENV_VERSION=$pv pyenv which python3.13 2>/dev/null || true)"
            if [ -n "$v" ] && [ -x "$v" ]; then echo "$v"; return 0; fi
        done
    fi
    v="$(command -v python3.13 || true)"
    if [ -n "$v" ] && PYENV_VERSION=3.13.0 "$v" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
        echo "$v"; return 0
    fi
    return 1
}

ensure_venv() {
    mkdir -p "$cache_root"
    # One builder at a time per machine; others wait for it and reuse the result.
    exec 9>"$cache_root/localstack-$key.lock"
    flock -w 900 9 || die "timed out waiting for another build of $VENV"
    if [ -f "$VENV/.sse-guard-ready" ] && "$VENV/bin/python" -c 'import localstack.runtime.main' 2>/dev/null; then
        log "reusing LocalStack venv $VENV"
        exec 9>&-
        return 0
    fi
    local py t0
    py="$(find_py313)" || die "Python 3.13 not found (pyenv 3.13.0 or python3.13 on PATH, or set SSE_GUARD_PY313)"
    log "building LocalStack venv $VENV with $py"
    t0=$SECONDS
    rm -rf "$VENV"
    local buildlog="$cache_root/localstack-$key.build.log"
    if ! { "$py" -m venv "$VENV" &&
           timeout 1200 "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${LOCALSTACK_PINS[@]}"; } \
           >"$buildlog" 2>&1; then
        grep -v '^WARNING: Location' "$buildlog" | tail -n 50 >&2 || true
        rm -rf "$VENV"
        die "pip install of LocalStack failed (full log: $buildlog)"
    fi
    "$VENV/bin/python" -c 'import localstack.runtime.main' || die "LocalStack installed but does not import"
    touch "$VENV/.sse-guard-ready"
    log "LocalStack venv built in $((SECONDS - t0)) s"
    exec 9>&-
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# exit 0 when /_localstack/health says s3 and kms are available (or running)
health_ok() {
    "$VENV/bin/python" - "$1" <<'EOF' 2>/dev/null
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
try:
    with opener.open(sys.argv[1] + "/_localstack/health", timeout=2) as r:
        services = json.load(r).get("services", {})
except Exception:
    sys.exit(1)
sys.exit(0 if all(services.get(s) in ("available", "running") for s in ("s3", "kms")) else 1)
EOF
}

poke_port() {
    "$VENV/bin/python" -c 'import socket, sys; s = socket.socket(); s.settimeout(0.5); s.connect_ex(("127.0.0.1", int(sys.argv[1]))); s.close()' "$1" 2>/dev/null || true
}

port_in_use() {
    "$VENV/bin/python" -c 'import socket, sys; s = socket.socket(); s.settimeout(1); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# exit 0 when process $1 itself holds the socket listening on 127.0.0.1:$2 (a second server on
# a taken port neither exits nor says so: the health check alone could answer for another one)
pid_listens() {
    "$VENV/bin/python" - "$1" "$2" <<'EOF' 2>/dev/null
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    f = line.split()
    host, p = f[1].split(":")
    if int(p, 16) == port and f[3] == "0A":
        inodes.add(f[9])
fd_dir = f"/proc/{pid}/fd"
for fd in os.listdir(fd_dir):
    try:
        target = os.readlink(os.path.join(fd_dir, fd))
    except OSError:
        continue
    if target.startswith("socket:[") and target[8:-1] in inodes:
        sys.exit(0)
sys.exit(1)
EOF
}

pid_is_ours() {
    local pid="$1"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'strict_s3_localstack.py'
}

stop() {
    [ -f "$PIDFILE" ] || { log "not running (no $PIDFILE)"; return 0; }
    local pid
    pid="$(cat "$PIDFILE")"
    if pid_is_ours "$pid"; then
        # SIGINT: exits in 1-2 s with the fix in strict_s3_localstack.py (without it, hypercorn's
        # event loop could sleep through shutdown until SIGKILL). Poking the port also wakes
        # it, as a fallback. Then TERM at 15 s, KILL at 25 s.
        local port=""
        [ -f "$DIR/localstack.port" ] && port="$(cat "$DIR/localstack.port")"
        log "stopping LocalStack (pid $pid)"
        kill -INT "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            pid_is_ours "$pid" || break
            [ "$i" -eq 30 ] && { log "still running after 15 s: SIGTERM $pid"; kill -TERM "$pid" 2>/dev/null || true; }
            sleep 0.5
            [ -n "$port" ] && poke_port "$port"
        done
        if pid_is_ours "$pid"; then
            log "still running after 25 s: SIGKILL $pid"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    else
        log "pid $pid is not a running LocalStack; nothing to stop"
    fi
    rm -f "$PIDFILE" "$DIR/endpoint" "$DIR/localstack.port"
}

start_once() {
    local port="$1" endpoint="http://127.0.0.1:$1"
    mkdir -p "$DIR/volume"
    if port_in_use "$port"; then
        log "port $port already answers on 127.0.0.1"
        echo "address already in use: $port (checked before start)" >>"$LOGFILE"
        return 1
    fi
    log "starting LocalStack on $endpoint (log: $LOGFILE)"
    # OVERRIDE_IN_DOCKER=0: this sandbox looks like a container to LocalStack, which then writes
    # to /var/lib/localstack; forcing host mode keeps every file under DIR (FILESYSTEM_ROOT).
    # SKIP_SSL_CERT_DOWNLOAD / DISABLE_EVENTS: no outbound calls (cert download, analytics).
    # GATEWAY_SERVER=hypercorn: the default twisted server ignores GATEWAY_LISTEN's host and
    # binds 0.0.0.0; hypercorn binds 127.0.0.1 only and answers the same (http and https on
    # one port). With either, a second instance on a taken port says "Ready." and lingers,
    # hence port_in_use before and pid_listens after.
    env -u PYTHONPATH -u VIRTUAL_ENV -u PYTHONHOME \
        GATEWAY_SERVER=hypercorn \
        SERVICES=s3,kms \
        EAGER_SERVICE_LOADING=1 \
        GATEWAY_LISTEN="127.0.0.1:$port" \
        S3_SKIP_SIGNATURE_VALIDATION=0 \
        S3_SKIP_KMS_KEY_VALIDATION=0 \
        DNS_ADDRESS=0 \
        LOCALSTACK_VOLUME_DIR="$DIR/volume" \
        FILESYSTEM_ROOT="$DIR/volume/fs" \
        OVERRIDE_IN_DOCKER=0 \
        SKIP_SSL_CERT_DOWNLOAD=1 \
        DISABLE_EVENTS=1 \
        "$VENV/bin/python" "$HERE/strict_s3_localstack.py" >>"$LOGFILE" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    echo "$port" >"$DIR/localstack.port"
    local t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "LocalStack exited during startup"
            rm -f "$PIDFILE"
            return 1
        fi
        if health_ok "$endpoint"; then
            if ! pid_listens "$pid" "$port"; then
                log "another process answers on port $port"
                echo "address already in use: $port (another process answered)" >>"$LOGFILE"
                stop
                return 1
            fi
            echo "$endpoint" >"$DIR/endpoint"
            log "LocalStack ready in $((SECONDS - t0)) s (pid $pid)"
            return 0
        fi
        sleep 0.25
    done
    log "LocalStack did not report s3 and kms available within $START_TIMEOUT s"
    stop
    return 1
}

start() {
    if [ -f "$PIDFILE" ] && pid_is_ours "$(cat "$PIDFILE")" && [ -f "$DIR/endpoint" ] && health_ok "$(cat "$DIR/endpoint")"; then
        log "already running (pid $(cat "$PIDFILE"))"
        echo "export SSE_GUARD_STRICT_ENDPOINT=$(cat "$DIR/endpoint")"
        return 0
    fi
    ensure_venv
    : >"$LOGFILE"
    local port attempt
    for attempt in 1 2 3; do
        if [ -n "${SSE_GUARD_STRICT_PORT:-}" ]; then port="$SSE_GUARD_STRICT_PORT"; else port="$(free_port)"; fi
        if start_once "$port"; then
            echo "export SSE_GUARD_STRICT_ENDPOINT=http://127.0.0.1:$port"
            return 0
        fi
        # a port taken between picking and binding is worth another try; anything else is not
        grep -qi 'address already in use' "$LOGFILE" && [ -z "${SSE_GUARD_STRICT_PORT:-}" ] || break
        log "port $port was taken; retrying (attempt $attempt)"
    done
    log "last 50 lines of $LOGFILE:"
    tail -n 50 "$LOGFILE" >&2 || true
    die "could not start LocalStack"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status)
        [ -f "$DIR/endpoint" ] && [ -x "$VENV/bin/python" ] && health_ok "$(cat "$DIR/endpoint")" ||
            { log "not answering"; exit 1; }
        log "answering at $(cat "$DIR/endpoint")"
        ;;
    *) usage ;;
esac
