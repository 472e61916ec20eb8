#!/usr/bin/env bash
# bench/vswrk.sh: bench against wrk on the same targets, on this machine.
#
#   make build && bench/vswrk.sh
#
# It starts, on 127.0.0.1 ports nothing else listens on, the targets of
# issue 20's acceptance and loads each with wrk and with bin/bench in
# turn (which goes first alternates by round), same connections and
# duration, for ROUNDS rounds:
#
#   nginx        its own nginx (worker_processes = CPUs) serving a static
#                13 KB file
#   userrouter   bin/userrouter with the memory store, serving hits of one
#                13 KB page of bin/origin (sessions in a SQLite file)
#
# Each run's throughput and CPU time per request (user + system of the
# tool's process, from bash's time, over the requests it counted) are
# printed, then per target the median of the per-round ratios bench/wrk
# and the median CPU per request of each tool. docs/bench.md reads them.
#
# Settings (environment):
#   ROUNDS          rounds                                  (default 3)
#   DURATION        seconds of each run                     (default 5)
#   CONNS           connections                             (default 64)
#   THREADS         wrk -t and bench -procs                 (default 2)
#   TARGETS         which targets, in order                 (default "nginx userrouter")
#   BENCH_ARGS      more bench flags, such as -netpoll      (default none)
#   BIN             where bench, userrouter and origin are  (default ./bin)
#   VSWRK_LIMIT     seconds before everything is stopped    (default 600)
#
# Everything it starts is stopped, and its temporary directory removed,
# when it ends, fails, is interrupted or runs out of time.
set -euo pipefail

LIMIT=${VSWRK_LIMIT:-600}
if [ -z "${USERROUTER_VSWRK_BOUNDED:-}" ]; then
	export USERROUTER_VSWRK_BOUNDED=1
	exec timeout --foreground -k 20 "$LIMIT" bash "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
read -r -a TARGETS <<<"${TARGETS:-nginx userrouter}"
read -r -a BENCH_ARGS <<<"${BENCH_ARGS:-}"
PAGE_SIZE=13312

log() { printf 'vswrk: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

tmp=""
pids=()
cleanup() {
	local rc=$? pid
	trap - EXIT
	set +e
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	[ -f "$tmp/nginx.pid" ] && kill -TERM "$(cat "$tmp/nginx.pid")" 2>/dev/null
	sleep 0.5
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "$tmp" ] && rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT
trap 'log "time limit of $LIMIT s reached (VSWRK_LIMIT)"; exit 124' TERM

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
command -v curl >/dev/null || die "curl not found (apt-get install curl)"
[ -x "$BIN/bench" ] || die "$BIN/bench not found: run make build first"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for t in "${TARGETS[@]}"; do
	case "$t" in
	nginx) [ -x "$NGINX" ] || die "nginx not found (apt-get install nginx)" ;;
	userrouter) [ -x "$BIN/userrouter" ] && [ -x "$BIN/origin" ] || die "$BIN/userrouter or $BIN/origin not found: run make build first" ;;
	*) die "TARGETS: unknown target \"$t\" (nginx, userrouter)" ;;
	esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/userrouter-vswrk.XXXXXX")
chmod 755 "$tmp"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % 20000))
		case "$taken" in *" $p "*) continue ;; esac
		port_open "$p" && continue
		taken="$taken$p "
		echo "$p"
		return 0
	done
	die "no free port found"
}
wait_url() { # URL: up to 10 s for a 200
	for _ in $(seq 1 100); do
		curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$tmp"/*.log >&2 2>/dev/null || true
	die "$1 does not answer"
}

declare -A URL
for t in "${TARGETS[@]}"; do
	case "$t" in
	nginx)
		port=$(free_port)
		mkdir -p "$tmp/www" "$tmp/nginx"
		head -c "$PAGE_SIZE" /dev/zero | tr '\0' x >"$tmp/www/static.html"
		chmod -R a+rX "$tmp/www"
		cat >"$tmp/nginx.conf" <<EOF
worker_processes $(nproc);
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $tmp/nginx/body; proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fcgi; uwsgi_temp_path $tmp/nginx/uwsgi; scgi_temp_path $tmp/nginx/scgi;
    server { listen 127.0.0.1:$port; root $tmp/www; }
}
EOF
		"$NGINX" -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/nginx-error.log"
		URL[nginx]="http://127.0.0.1:$port/static.html"
		;;
	userrouter)
		po=$(free_port) pu=$(free_port) pa=$(free_port)
		"$BIN/origin" -addr "127.0.0.1:$po" -size "$PAGE_SIZE" -render 0 -workers 64 -max-age 1h \
			-sqlite "$tmp/db.sqlite3" >"$tmp/origin.log" 2>&1 &
		pids+=($!)
		wait_url "http://127.0.0.1:$po/healthz"
		cat >"$tmp/ur.toml" <<EOF
[listen]
addr = "127.0.0.1:$pu"
admin_addr = "127.0.0.1:$pa"
[backend]
addrs = ["127.0.0.1:$po"]
[session]
driver = "sqlite"
dsn = "$tmp/db.sqlite3"
[cache]
store = "memory"
[log]
level = "warn"
EOF
		"$BIN/userrouter" -config "$tmp/ur.toml" >"$tmp/userrouter.log" 2>&1 &
		pids+=($!)
		wait_url "http://127.0.0.1:$pa/readyz"
		URL[userrouter]="http://127.0.0.1:$pu/page/1"
		;;
	esac
	wait_url "${URL[$t]}"
	curl -fsS -o /dev/null "${URL[$t]}" # userrouter: the page is stored, every later request a hit
done

TIMEFORMAT='CPU %U %S'
# run_wrk URL: prints "rps cpu-µs-per-request"
run_wrk() {
	{ time wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$1" >"$tmp/wrk.out"; } 2>"$tmp/wrk.time"
	local n rps cpu
	n=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
	rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/wrk.out")
	cpu=$(awk '/^CPU/ {print $2 + $3}' "$tmp/wrk.time")
	awk -v r="$rps" -v c="$cpu" -v n="$n" 'BEGIN {printf "%.0f %.2f\n", r, c * 1e6 / n}'
}
# run_bench URL: the same for bench
run_bench() {
	{ time "$BIN/bench" -procs "$THREADS" -url "$1" -c "$CONNS" -duration "${DURATION}s" -warmup 0 -json \
		"${BENCH_ARGS[@]}" >"$tmp/bench.json" 2>"$tmp/bench.err"; } 2>"$tmp/bench.time"
	local n rps cpu errs
	n=$(jq .requests "$tmp/bench.json")
	errs=$(jq .errors "$tmp/bench.json")
	[ "$errs" = 0 ] || log "bench: $errs errors: $(jq -c .errors_by_kind "$tmp/bench.json")"
	rps=$(jq .requests_per_second "$tmp/bench.json")
	cpu=$(awk '/^CPU/ {print $2 + $3}' "$tmp/bench.time")
	awk -v r="$rps" -v c="$cpu" -v n="$n" 'BEGIN {printf "%.0f %.2f\n", r, c * 1e6 / n}'
}
median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $ROUNDS rounds of ${DURATION}s, -c $CONNS, wrk -t$THREADS, bench -procs $THREADS ${BENCH_ARGS[*]}"
printf '%-11s %5s %10s %10s %7s %12s %12s\n' target round wrk_rps bench_rps ratio wrk_cpu_us bench_cpu_us
declare -A RATIOS WCPU BCPU
for round in $(seq 1 "$ROUNDS"); do
	for t in "${TARGETS[@]}"; do
		if ((round % 2)); then
			read -r wr wc < <(run_wrk "${URL[$t]}")
			read -r br bc < <(run_bench "${URL[$t]}")
		else
			read -r br bc < <(run_bench "${URL[$t]}")
			read -r wr wc < <(run_wrk "${URL[$t]}")
		fi
		ratio=$(awk -v b="$br" -v w="$wr" 'BEGIN {printf "%.3f", b / w}')
		printf '%-11s %5d %10s %10s %7s %12s %12s\n' "$t" "$round" "$wr" "$br" "$ratio" "$wc" "$bc"
		RATIOS[$t]+="$ratio "
		WCPU[$t]+="$wc "
		BCPU[$t]+="$bc "
	done
done
echo
for t in "${TARGETS[@]}"; do
	printf '%s: median bench/wrk %s over %d rounds; median CPU per request: wrk %s µs, bench %s µs\n' "$t" \
		"$(tr ' ' '\n' <<<"${RATIOS[$t]}" | grep . | median)" "$ROUNDS" \
		"$(tr ' ' '\n' <<<"${WCPU[$t]}" | grep . | median)" "$(tr ' ' '\n' <<<"${BCPU[$t]}" | grep . | median)"
done
log "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
