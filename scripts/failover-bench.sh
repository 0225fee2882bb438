#!/usr/bin/env bash
# Measures what losing a replica costs the requests in flight. Starts Lethe as
# deployed with two of each role: `lethe dev` (embedded Temporal and Kafka,
# plus an API, a worker and a relay), a second worker, a second relay and a
# second API. Runs `lethe bench --url` against the second API at K=5 and, a
# few seconds into the measured requests, kills the second worker and the
# second relay with SIGKILL. Prints the bench's latency percentiles and what
# the ledger says was lost or recorded twice. Run from the repository root:
#
#   scripts/failover-bench.sh                 # K=5, N=200, 20 in flight, kill 3 s in
#   scripts/failover-bench.sh --no-kill       # the same run without the kills
#   N=400 KILL_AFTER=5 scripts/failover-bench.sh
#
# Needs Go, curl, jq and psql, and PostgreSQL at LETHE_DATABASE_URL's server
# (default postgres://postgres@127.0.0.1:5432). It creates a scratch database
# lethe_failover_<random> and drops it at the end (KEEP=1 keeps it and the
# logs). Ports PORT_BASE to PORT_BASE+9 (default 27100) must be free. Every
# process it starts is stopped when it exits.
set -euo pipefail

KILL=1
if [[ "${1:-}" == "--no-kill" ]]; then
	KILL=0
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--no-kill]" >&2
	exit 2
fi
if [[ ! -f cmd/lethe/main.go ]]; then
	echo "failover-bench: run from the repository root" >&2
	exit 2
fi
for tool in go curl jq psql; do
	command -v "$tool" >/dev/null || { echo "failover-bench: $tool is required" >&2; exit 2; }
done

readonly K="${K:-5}" N="${N:-200}" CONCURRENCY="${CONCURRENCY:-20}" KILL_AFTER="${KILL_AFTER:-3}"
readonly PORT_BASE="${PORT_BASE:-27100}"
readonly SERVER_URL="${LETHE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
WORK="$(mktemp -d /tmp/lethe-failover.XXXXXX)"
readonly WORK
DB="lethe_failover_$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
readonly DB
# The scratch database's URL: the server's URL with its path replaced.
DB_URL="$(sed -E "s#^(postgres(ql)?://[^/]+)/[^?]*#\1/${DB}#" <<<"$SERVER_URL")"
readonly DB_URL ADMIN_URL="$(sed -E 's#^(postgres(ql)?://[^/]+)/[^?]*#\1/postgres#' <<<"$SERVER_URL")"

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ "${KEEP:-0}" == 1 ]]; then
		echo "kept: database $DB, logs in $WORK" >&2
	else
		psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log() { echo "failover-bench: $*" >&2; }

log "building lethe into $WORK"
go build -o "$WORK/lethe" ./cmd/lethe

export LETHE_DATABASE_URL="$DB_URL"
export LETHE_KAFKA_BROKERS="127.0.0.1:$((PORT_BASE + 0))"
export TEMPORAL_ADDRESS="127.0.0.1:$((PORT_BASE + 1))"
export LETHE_SUBJECT_KEY="$(hex 32)"
export LETHE_CODEC_KEYS="k1:$(hex 32)"
export LETHE_SYSTEM_KEY="$(hex 32)"
export LETHE_SIGNING_KEY="$(hex 32)"
# The benchmark polls each request every 50 ms: the per-principal rate limit
# would measure itself.
export LETHE_RATE_LIMIT=0
readonly API1="127.0.0.1:$((PORT_BASE + 2))" API2="127.0.0.1:$((PORT_BASE + 3))"

# start NAME ROLE [ENV=VALUE ...] [-- ARGS]: runs `lethe ROLE` in the
# background with its output in $WORK/NAME.log; its pid goes to PIDS and to
# the variable NAME_PID.
start() {
	local name=$1 role=$2
	shift 2
	local envs=() args=()
	while [[ $# -gt 0 && "$1" != "--" ]]; do envs+=("$1"); shift; done
	[[ "${1:-}" == "--" ]] && shift && args=("$@")
	env "${envs[@]}" "$WORK/lethe" "$role" "${args[@]}" >"$WORK/$name.log" 2>&1 &
	PIDS+=("$!")
	printf -v "${name}_PID" '%s' "$!"
}

# ready URL NAME: waits up to 120 s for URL to answer 200.
ready() {
	local i
	for i in $(seq 1 240); do
		if curl -fs -o /dev/null "$1"; then return 0; fi
		sleep 0.5
	done
	log "$2 is not ready after 120 s; its log:"
	tail -n 30 "$WORK/$2.log" >&2
	exit 1
}

log "starting lethe dev, a second worker, a second relay and a second API (database $DB)"
start dev dev LETHE_HTTP_ADDR="$API1" LETHE_UI_ADDR="127.0.0.1:$((PORT_BASE + 4))" \
	LETHE_CODEC_ADDR="127.0.0.1:$((PORT_BASE + 5))" -- --ephemeral --data-dir "$WORK/dev"
ready "http://$API1/readyz" dev
start worker2 worker LETHE_HEALTH_ADDR="127.0.0.1:$((PORT_BASE + 6))"
start relay2 relay LETHE_HEALTH_ADDR="127.0.0.1:$((PORT_BASE + 7))"
start api2 api LETHE_HTTP_ADDR="$API2"
ready "http://127.0.0.1:$((PORT_BASE + 6))/readyz" worker2
ready "http://127.0.0.1:$((PORT_BASE + 7))/readyz" relay2
ready "http://$API2/readyz" api2
TOKEN="$("$WORK/lethe" token create --name failover-bench \
	--scopes systems:read,systems:write,erasures:read,erasures:write 2>/dev/null | tail -n 1)"

log "lethe bench --url http://$API2 --k $K --n $N --concurrency $CONCURRENCY --rounds 1"
"$WORK/lethe" bench --url "http://$API2" --token "$TOKEN" --kafka-brokers "$LETHE_KAFKA_BROKERS" \
	--k "$K" --n "$N" --concurrency "$CONCURRENCY" --rounds 1 --json >"$WORK/bench.json" 2>"$WORK/bench.log" &
BENCH_PID=$!
PIDS+=("$BENCH_PID")

if [[ $KILL == 1 ]]; then
	# The measured requests start when the bench prints "  Lethe: N …".
	until grep -qE "^  Lethe: $N " "$WORK/bench.log"; do
		if ! kill -0 "$BENCH_PID" 2>/dev/null; then
			log "the benchmark ended before its measured requests; its log:"
			cat "$WORK/bench.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	sleep "$KILL_AFTER"
	kill -KILL "$worker2_PID" "$relay2_PID"
	log "killed the second worker and the second relay (SIGKILL) ${KILL_AFTER} s into the measured requests"
fi

if ! wait "$BENCH_PID"; then
	log "the benchmark failed (a lost or wrong request fails it); its log:"
	tail -n 30 "$WORK/bench.log" >&2
	exit 1
fi

# What the ledger says: requests that did not complete (lost), and requests
# with a system dispatched or confirmed more than once (recorded twice).
read -r LOST DOUBLED < <(psql -qtA -F ' ' "$DB_URL" -c "
	SELECT (SELECT count(*) FROM erasure_requests WHERE status <> 'completed'),
	       (SELECT count(DISTINCT request_id) FROM (
	            SELECT request_id FROM audit_events
	            WHERE kind IN ('dispatched', 'confirmed')
	            GROUP BY request_id, system, kind HAVING count(*) > 1
	            UNION ALL
	            SELECT request_id FROM erasure_systems WHERE attempts > 1) d)")
REQUESTS="$(psql -qtA "$DB_URL" -c "SELECT count(*) FROM erasure_requests")"

jq -r --arg kill "$([[ $KILL == 1 ]] && echo "worker and relay killed ${KILL_AFTER} s in" || echo "no kill")" \
	--arg lost "$LOST" --arg doubled "$DOUBLED" --arg requests "$REQUESTS" '
	.runs[0] as $r |
	"K=\($r.k) N=\($r.n) concurrency=\(.concurrency), \($kill)\n" +
	"p50 \($r.lethe.latency_ms.p50 | round) ms  p95 \($r.lethe.latency_ms.p95 | round) ms  p99 \($r.lethe.latency_ms.p99 | round) ms\n" +
	"requests in the ledger: \($requests), not completed: \($lost), with a system dispatched or confirmed twice: \($doubled)\n" +
	"load average before \(.load_average_before), after \(.load_average_after)"' "$WORK/bench.json"
