#!/usr/bin/env bash
# Local "cluster": N oracle servers on loopback sharing one PostgreSQL registry, each with its
# own data dir under a temporary folder. Waits until every server reports SERVING on the gRPC
# health service, prints the targets, then runs for --duration seconds (or until Ctrl-C) and
# stops the servers (SIGTERM, drain, SIGKILL after the grace period) and removes the folder.
#
#   deploy/local/cluster_demo.sh                      # 3 servers until Ctrl-C
#   deploy/local/cluster_demo.sh --duration 60        # ... for one minute
#   make cluster-demo ARGS="--duration 60"
#
# Needs PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test` (or --db-url).
# Note: the registry tables stay in that database after the demo.
# Tenant limits: shared by the replicas through Redis with --redis (the machine's Redis on
# 127.0.0.1:6379) or --limits-url URL (default: $ORACLE_LIMITS_URL); else per replica.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

REPLICAS=3
BASE_PORT=50061
METRICS_BASE_PORT=9471
DB_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test"
DURATION=0
STARTUP_TIMEOUT=180
GRACE_S=5
DB_CHECK=1
KEEP=0
LIMITS_URL="${ORACLE_LIMITS_URL:-}"
MACHINE_REDIS="redis://127.0.0.1:6379/0"
SERVER="${ORACLE_SERVER_BIN:-}"
PY="${ORACLE_DEMO_PYTHON:-}"

usage() {
  cat <<EOF
Usage: $(basename "$0") [options]

  --replicas N            servers to start (default $REPLICAS)
  --base-port P           gRPC port of the first server (default $BASE_PORT; then P+1, ...)
  --metrics-base-port P   metrics port of the first server (default $METRICS_BASE_PORT)
  --db-url URL            shared registry (default $DB_URL)
  --limits-url URL        share the tenants' rate/work limits through this Redis
                          (default \$ORACLE_LIMITS_URL; empty: per-replica limits)
  --redis                 the same with the machine's Redis: $MACHINE_REDIS
  --duration S            stop after S seconds once all are SERVING (default 0: until Ctrl-C)
  --startup-timeout S     give up if not all SERVING after S seconds (default $STARTUP_TIMEOUT)
  --grace S               ORACLE_GRACE_S of the servers (drain on stop; default $GRACE_S)
  --server PATH           oracle-server executable (default .venv/bin/oracle-server, then PATH)
  --python PATH           Python with grpcio-health-checking/psycopg (default .venv/bin/python)
  --no-db-check           do not check that PostgreSQL (and Redis) answer before starting
  --keep                  keep the temporary folder (data dirs and logs) on exit
  -h, --help              this help
EOF
}

die() { echo "cluster_demo: $*" >&2; exit 2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --replicas) REPLICAS="${2:?}"; shift 2 ;;
    --base-port) BASE_PORT="${2:?}"; shift 2 ;;
    --metrics-base-port) METRICS_BASE_PORT="${2:?}"; shift 2 ;;
    --db-url) DB_URL="${2:?}"; shift 2 ;;
    --limits-url) LIMITS_URL="${2:?}"; shift 2 ;;
    --redis) LIMITS_URL="$MACHINE_REDIS"; shift ;;
    --duration) DURATION="${2:?}"; shift 2 ;;
    --startup-timeout) STARTUP_TIMEOUT="${2:?}"; shift 2 ;;
    --grace) GRACE_S="${2:?}"; shift 2 ;;
    --server) SERVER="${2:?}"; shift 2 ;;
    --python) PY="${2:?}"; shift 2 ;;
    --no-db-check) DB_CHECK=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

for v in REPLICAS BASE_PORT METRICS_BASE_PORT DURATION STARTUP_TIMEOUT GRACE_S; do
  is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
[[ "$REPLICAS" -ge 1 && "$REPLICAS" -le 16 ]] || die "--replicas must be 1..16"

if [[ -z "$SERVER" ]]; then
  if [[ -x "$ROOT/.venv/bin/oracle-server" ]]; then
    SERVER="$ROOT/.venv/bin/oracle-server"
  else
    SERVER="$(command -v oracle-server || true)"
  fi
fi
[[ -n "$SERVER" && -x "$SERVER" ]] || die "oracle-server not found (run 'make install' or pass --server)"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

GRPC_PORTS=()
METRICS_PORTS=()
for ((i = 0; i < REPLICAS; i++)); do
  GRPC_PORTS+=("$((BASE_PORT + i))")
  METRICS_PORTS+=("$((METRICS_BASE_PORT + i))")
done
for p in "${GRPC_PORTS[@]}" "${METRICS_PORTS[@]}"; do
  if port_busy "$p"; then die "port $p is already in use"; fi
done

if [[ "$DB_CHECK" -eq 1 ]]; then
  "$PY" - "$DB_URL" <<'EOF' || die "PostgreSQL not reachable at $DB_URL (start it, pass --db-url, or --no-db-check)"
import sys
import psycopg
url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
try:
    with psycopg.connect(url, connect_timeout=3) as conn:
        conn.execute("SELECT 1")
except psycopg.Error as exc:
    sys.exit(f"cluster_demo: {exc}")
EOF
fi

if [[ -n "$LIMITS_URL" && "$DB_CHECK" -eq 1 ]]; then
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$LIMITS_URL" <<'EOF' || die "Redis not usable at --limits-url (start redis-server, fix the URL, or --no-db-check)"
import sys
from oracle_server.limits import LimitsConfigError, SharedLimits
try:
    ok = SharedLimits(sys.argv[1]).check()
except LimitsConfigError as exc:  # the message never holds the password
    sys.exit(f"cluster_demo: {exc}")
if not ok:
    sys.exit("cluster_demo: Redis does not answer")
EOF
fi
LIMITS_SHOWN="per replica (in memory)"
if [[ -n "$LIMITS_URL" ]]; then  # shown without its password
  LIMITS_SHOWN="shared through Redis ${LIMITS_URL%%://*}://${LIMITS_URL##*@}"
  if [[ "$LIMITS_URL" != *@* ]]; then LIMITS_SHOWN="shared through Redis $LIMITS_URL"; fi
fi

WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/oracle-cluster.XXXXXX")"
PIDS=()
TIMER_PID=""

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$TIMER_PID" ]]; then kill "$TIMER_PID" 2>/dev/null || true; fi
  if [[ ${#PIDS[@]} -gt 0 ]]; then
    echo "stopping ${#PIDS[@]} server(s) ..."
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    # bounded: drain period + 5 s, then SIGKILL
    local deadline=$((SECONDS + GRACE_S + 5)) alive
    while :; do
      alive=()
      for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
      done
      [[ ${#alive[@]} -eq 0 || $SECONDS -ge $deadline ]] && break
      sleep 0.2
    done
    if [[ ${#alive[@]} -gt 0 ]]; then
      echo "killing ${alive[*]} (did not exit within $((GRACE_S + 5)) s)" >&2
      kill -KILL "${alive[@]}" 2>/dev/null || true
    fi
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  if [[ "$KEEP" -eq 1 ]]; then
    echo "kept $WORKDIR (data dirs and logs)"
  else
    rm -rf "$WORKDIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Build the proxy artifact once and give every data dir a copy (else each server builds it).
if "$SERVER" build-proxy --help >/dev/null 2>&1; then
  echo "building the proxy artifact once into $WORKDIR/seed ..."
  "$SERVER" build-proxy --data-dir "$WORKDIR/seed" >"$WORKDIR/build-proxy.log" 2>&1 \
    || { tail -n 20 "$WORKDIR/build-proxy.log" >&2; die "build-proxy failed"; }
fi

for ((i = 0; i < REPLICAS; i++)); do
  data="$WORKDIR/server-$i"
  mkdir -p "$data"
  if [[ -d "$WORKDIR/seed/cache" ]]; then cp -R "$WORKDIR/seed/cache" "$data/"; fi
  ORACLE_HOST=127.0.0.1 \
  ORACLE_PORT="${GRPC_PORTS[$i]}" \
  ORACLE_METRICS_PORT="${METRICS_PORTS[$i]}" \
  ORACLE_DATA_DIR="$data" \
  ORACLE_DATABASE_URL="$DB_URL" \
  ORACLE_LIMITS_URL="$LIMITS_URL" \
  ORACLE_GRACE_S="$GRACE_S" \
  ORACLE_LOG_FORMAT=text \
    "$SERVER" serve >"$WORKDIR/server-$i.log" 2>&1 &
  PIDS+=("$!")
done
echo "started ${#PIDS[@]} server(s) (pids ${PIDS[*]}); data dirs and logs under $WORKDIR"

echo "waiting up to ${STARTUP_TIMEOUT}s for SERVING on ports ${GRPC_PORTS[*]} ..."
if ! "$PY" - "$STARTUP_TIMEOUT" "${PIDS[*]}" "${GRPC_PORTS[@]}" <<'EOF'; then
import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

timeout, pids, ports = float(sys.argv[1]), [int(p) for p in sys.argv[2].split()], sys.argv[3:]
deadline = time.monotonic() + timeout
pending = set(ports)


def check_alive():
    for pid in pids:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(f"server pid {pid} exited during startup")


while pending and time.monotonic() < deadline:
    check_alive()
    for port in sorted(pending):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="latency_oracle.v1.LatencyOracle"),
                    timeout=1,
                )
            except grpc.RpcError:
                continue
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            pending.discard(port)
            print(f"  127.0.0.1:{port} SERVING", flush=True)
    if pending:
        time.sleep(0.5)
if pending:
    sys.exit(f"not SERVING in time: {' '.join(sorted(pending))}")
# A replica that could not bind its port exits within a second or two of its start; if
# another process answered on that port meanwhile, the probe above saw *its* SERVING.
time.sleep(1.0)
check_alive()
EOF
  for ((i = 0; i < REPLICAS; i++)); do
    echo "--- server-$i.log (last lines)" >&2
    tail -n 15 "$WORKDIR/server-$i.log" >&2 || true
  done
  exit 1
fi

grpc_list="$(printf '127.0.0.1:%s,' "${GRPC_PORTS[@]}")"
metrics_list="$(printf "'127.0.0.1:%s', " "${METRICS_PORTS[@]}")"
cat <<EOF

All ${REPLICAS} servers are SERVING (registry: ${DB_URL%%://*}://...@${DB_URL##*@}).
tenant limits:   ${LIMITS_SHOWN}
gRPC targets:    $(printf '127.0.0.1:%s ' "${GRPC_PORTS[@]}")
client target:   ipv4:${grpc_list%,}   (use the round_robin load-balancing policy)
metrics targets: $(printf 'http://127.0.0.1:%s/metrics ' "${METRICS_PORTS[@]}")
prometheus.yml:  scrape_configs: [{job_name: latency-oracle, static_configs: [{targets: [${metrics_list%, }]}]}]
logs:            $WORKDIR/server-*.log
EOF

if [[ "$DURATION" -gt 0 ]]; then
  echo "running for ${DURATION}s (Ctrl-C stops earlier) ..."
  sleep "$DURATION" &
  TIMER_PID=$!
else
  echo "running until Ctrl-C ..."
fi

# Returns when the timer ends, on Ctrl-C/SIGTERM (traps), or when any server exits.
set +e
wait -n ${TIMER_PID:+"$TIMER_PID"} "${PIDS[@]}"
set -e
if [[ -n "$TIMER_PID" ]] && ! kill -0 "$TIMER_PID" 2>/dev/null; then
  TIMER_PID=""
  echo "duration reached"
  exit 0
fi
for ((i = 0; i < REPLICAS; i++)); do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
    echo "server-$i (pid ${PIDS[$i]}) exited unexpectedly; last log lines:" >&2
    tail -n 15 "$WORKDIR/server-$i.log" >&2 || true
  fi
done
exit 1
