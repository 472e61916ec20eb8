#!/usr/bin/env bash
# bench/sizes.sh: what userrouter's pages cost, against the sizes in its
# config and against nginx proxy_cache, on this machine (issue 19).
#
#   make build && bash bench/sizes.sh
#
# Two tables, in SIZES_OUT/results.md:
#
#   rss    bin/origin -size 16384, userrouter with the memory store
#          (memory_size 64MiB) and with memcached + L1 (l1_size 64MiB),
#          wrk -t2 -c64 on 30,000 distinct pages at random (a working set
#          larger than the store): req/s, p99 and the process's resident
#          size after each of RSS_ROUNDS runs of RSS_DURATION.
#   hits   for each page size (1 KB, 16 KB, 128 KB, 512 KB): 100 pages
#          warmed in userrouter (memory store; memcached + L1) and in nginx
#          proxy_cache, then wrk -t2 -c64 on them at random, ROUNDS rounds
#          in a rotated order: medians of req/s, p99 and each peer's CPU
#          time per hit (which a shared machine moves much less than req/s).
#
# Everything runs on free ports of 127.0.0.1 and is stopped at the end;
# nginx and memcached are its own instances. Needs nginx, memcached, wrk
# and curl, installed from Debian when missing (apt-get, as root).
#
# Settings (environment): SIZES_OUT (./bench-sizes-out), ROUNDS (3),
# DURATION (5s), RSS_ROUNDS (3), RSS_DURATION (15s), SIZES ("1024 16384
# 131072 524288"), TABLES ("rss hits"), BIN (./bin), LOADGEN ("wrk", or
# "bench": BIN/bench -c 64 on the same pages, which needs jq), RATE (with
# LOADGEN=bench: an open loop of RATE requests/s, the same offered load
# for every peer, so that p99 compares latency rather than queueing).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${SIZES_OUT:-$ROOT/bench-sizes-out}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
RSS_ROUNDS=${RSS_ROUNDS:-3}
RSS_DURATION=${RSS_DURATION:-15s}
read -r -a PAGE_SIZES <<<"${SIZES:-1024 16384 131072 524288}"
read -r -a TABLES <<<"${TABLES:-rss hits}"
LOADGEN=${LOADGEN:-wrk}
case "$LOADGEN" in
wrk) LOADGEN_RUN="wrk -t2 -c64 -d$DURATION" ;;
bench) LOADGEN_RUN="bench -c 64 -duration $DURATION${RATE:+ -rate $RATE}" ;;
*) echo "bench-sizes: LOADGEN: wrk or bench, not $LOADGEN" >&2; exit 1 ;;
esac
if [ -n "${RATE:-}" ] && [ "$LOADGEN" != bench ]; then
	echo "bench-sizes: RATE needs LOADGEN=bench (wrk has no open loop)" >&2
	exit 1
fi

log() { printf 'bench-sizes: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
for b in userrouter origin $([ "$LOADGEN" = bench ] && echo bench); do [ -x "$BIN/$b" ] || die "$BIN/$b not found: run make build first"; done
missing=()
for c in nginx memcached wrk curl $([ "$LOADGEN" = bench ] && echo jq); do command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing ${missing[*]}: apt-get install ${missing[*]}"
	log "installing ${missing[*]} (apt-get)"
	created_policy=0
	# Debian would start the packaged nginx and memcached: forbid that.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
	fi
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null || true
	[ "$created_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
MEMCACHED=$(command -v memcached) || die "memcached not found"
command -v wrk >/dev/null || die "wrk not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/userrouter-sizes.XXXXXX")
chmod 755 "$tmp"
mkdir -p "$OUT/raw"
pids=()
cleanup() {
	local rc=$?
	set +e
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
taken=" "
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % (eph_lo - 10000)))
		case "$taken" in *" $p "*) continue ;; esac
		port_open "$p" && continue
		taken="$taken$p "
		echo "$p"
		return 0
	done
	die "no free port found"
}
declare -A PID
start() { # NAME CMD...
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	PID[$name]=$!
}
stop() { # NAME
	local p=${PID[$1]}
	kill -TERM "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
wait_url() { # NAME URL
	for ((i = 0; i < 100; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
		kill -0 "${PID[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$tmp/$1.log" >&2
	die "$1 did not answer $2"
}

cat >"$tmp/pages.lua" <<'EOF'
-- PAGES distinct pages at random
local n = tonumber(os.getenv("PAGES"))
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
request = function()
  return wrk.format("GET", "/page/" .. math.random(0, n - 1))
end
EOF

# origin SIZE: (re)starts the origin with pages of SIZE bytes.
origin() {
	P_ORIGIN=$(free_port)
	start origin "$BIN/origin" -addr "127.0.0.1:$P_ORIGIN" -size "$1" -render 0 -workers 64 -max-age 1h -sqlite "$tmp/db.sqlite3"
	wait_url origin "http://127.0.0.1:$P_ORIGIN/healthz"
}

# router NAME cache-lines...: starts a userrouter; sets P[NAME].
declare -A P
router() {
	local name=$1 port admin
	shift
	port=$(free_port) admin=$(free_port)
	cat >"$tmp/$name.toml" <<EOF
[listen]
addr = "127.0.0.1:$port"
admin_addr = "127.0.0.1:$admin"
[backend]
addrs = ["127.0.0.1:$P_ORIGIN"]
[session]
driver = "sqlite"
dsn = "$tmp/db.sqlite3"
[cache]
$(printf '%s\n' "$@")
[log]
level = "warn"
EOF
	start "$name" "$BIN/userrouter" -config "$tmp/$name.toml"
	wait_url "$name" "http://127.0.0.1:$admin/readyz"
	P[$name]=$port
}

memcached_up() {
	P_MC=$(free_port)
	local u=()
	[ "$(id -u)" = 0 ] && u=(-u root)
	start memcached "$MEMCACHED" -l 127.0.0.1 -p "$P_MC" -U 0 -m 1024 -t 2 "${u[@]}"
	for ((i = 0; i < 50; i++)); do port_open "$P_MC" && return 0; sleep 0.1; done
	die "memcached did not start"
}

nginx_up() {
	P[nginx]=$(free_port)
	rm -rf "$tmp/nginx" # the cache of another page size: same keys
	mkdir -p "$tmp/nginx"
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
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;
    upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 64; }
    proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=pages:64m max_size=1g inactive=10m use_temp_path=off;
    server {
        listen 127.0.0.1:${P[nginx]};
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 16 64k;
            proxy_cache pages;
            proxy_cache_valid 200 10m;
            add_header Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
	start nginx "$NGINX" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -p "$tmp/nginx" -g 'daemon off;'
	wait_url nginx "http://127.0.0.1:${P[nginx]}/healthz"
}

# ticks PID...: utime+stime of the processes, in clock ticks.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
TCK=$(getconf CLK_TCK)

# load NAME PAGES DURATION OUTFILE: wrk; prints "req/s p99_ms cpu_us",
# cpu_us the peer's CPU time per request (its processes' utime+stime, an
# nginx's workers included, over the requests wrk completed): a measure
# that moves much less than req/s on a machine shared with other work.
load() {
	local ps t0 t1
	ps=$(echo "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true))
	t0=$(ticks $ps)
	if [ "$LOADGEN" = bench ]; then
		"$BIN/bench" -c 64 ${RATE:+-rate "$RATE"} -duration "$3" -warmup 0 -json -url "http://127.0.0.1:${P[$1]}/" -paths "$2" >"$4"
		t1=$(ticks $ps)
		jq -r --arg t $((t1 - t0)) --arg hz "$TCK" '"\(.requests_per_second) \(.latency_ms.p99) \(if .requests > 0 then ($t | tonumber) * 1e6 / ($hz | tonumber) / .requests else 0 end)"' "$4"
		return
	fi
	PAGES=$2 wrk -t2 -c64 -d"$3" --latency -s "$tmp/pages.lua" "http://127.0.0.1:${P[$1]}/" >"$4" 2>&1
	t1=$(ticks $ps)
	awk -v t=$((t1 - t0)) -v hz="$TCK" '/Requests\/sec/ { r = $2 }
	/requests in/ { n = $1 }
	$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		p = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
	/Non-2xx|Socket errors/ { bad = bad " " $0 }
	END { printf "%s %s %.1f\n", r, p, n ? t * 1e6 / hz / n : 0; if (bad != "") print "wrk:" bad > "/dev/stderr" }' "$4"
}

rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

results=$OUT/results.md
: >"$results"

for table in "${TABLES[@]}"; do
	case "$table" in
	rss)
		origin 16384
		memcached_up
		router ur-memory 'store = "memory"' 'memory_size = "64MiB"'
		router ur-l1 'store = "memcached"' "servers = [\"127.0.0.1:$P_MC\"]" 'l1_size = "64MiB"'
		{
			echo "### Resident memory against the configured sizes"
			echo
			echo "bin/origin -size 16384; wrk -t2 -c64 -d$RSS_DURATION on 30,000 distinct pages at random, $RSS_ROUNDS runs in a row per"
			echo "configuration; RSS after each run (VmRSS), bound = 1.25 x (memory_size + l1_size) + 40 MB."
			echo
			echo "| configuration | memory_limit (derived) | bound | run | req/s | p99 ms | RSS MB |"
			echo "|---|---:|---:|---:|---:|---:|---:|"
		} >>"$results"
		for name in ur-memory ur-l1; do
			limit=$("$BIN/userrouter" -check -config "$tmp/$name.toml" 2>/dev/null | sed -n 's/^memory_limit = //p' | tr -d "'\"")
			for ((r = 1; r <= RSS_ROUNDS; r++)); do
				read -r rps p99 _ < <(load "$name" 30000 "$RSS_DURATION" "$OUT/raw/rss-$name-r$r.txt")
				rss=$(rss_mb "${PID[$name]}")
				log "rss $name run $r: $rps req/s, p99 $p99 ms, RSS $rss MB"
				echo "| $name | $limit | 124 MB | $r | $rps | $p99 | $rss |" >>"$results"
			done
		done
		echo >>"$results"
		stop ur-memory
		stop ur-l1
		stop memcached
		stop origin
		;;
	hits)
		{
			echo "### Hits against page size, next to nginx proxy_cache"
			echo
			echo "100 pages of each size warmed in every peer; $LOADGEN_RUN on them at random, $ROUNDS rounds in a rotated"
			echo "order; medians of req/s and p99, the median of the per-round ratios to nginx, and the median of the peer's"
			echo "CPU time per hit (utime+stime of its processes over the run, nginx's workers included)."
			echo
			echo "| page | peer | req/s | × nginx | p99 ms | p99 × nginx | CPU µs/hit |"
			echo "|---|---|---:|---:|---:|---:|---:|"
		} >>"$results"
		for size in "${PAGE_SIZES[@]}"; do
			origin "$size"
			memcached_up
			router ur-memory 'store = "memory"' 'memory_size = "512MiB"'
			router ur-l1 'store = "memcached"' "servers = [\"127.0.0.1:$P_MC\"]" 'l1_size = "256MiB"'
			nginx_up
			peers=(nginx ur-memory ur-l1)
			for p in "${peers[@]}"; do
				curl -fsS --max-time 20 -o /dev/null "http://127.0.0.1:${P[$p]}/page/[0-99]"
				curl -fsS --max-time 20 -o /dev/null "http://127.0.0.1:${P[$p]}/page/[0-99]"
				got=$(curl -fsS --max-time 20 -o /dev/null -w '%{size_download}' "http://127.0.0.1:${P[$p]}/page/99")
				st=$(curl -fsS --max-time 20 -o /dev/null -D - "http://127.0.0.1:${P[$p]}/page/99" | tr -d '\r' | sed -n 's/^[Cc]ache-[Ss]tatus: //p')
				case "$st" in *HIT* | *"; hit"*) ;; *) cat "$tmp/nginx-error.log" >&2 2>/dev/null; die "$p: /page/99 is not a hit after warming: Cache-Status \"$st\"" ;; esac
				[ "$got" = "$size" ] || die "$p: /page/99 is $got bytes; want $size"
			done
			declare -A RPS=() P99=() RR=() PR=() CPU=()
			for ((r = 1; r <= ROUNDS; r++)); do
				declare -A rr=() pp=()
				for ((k = 0; k < ${#peers[@]}; k++)); do
					p=${peers[$(((k + r - 1) % ${#peers[@]}))]}
					read -r rps p99 cpu < <(load "$p" 100 "$DURATION" "$OUT/raw/hits-$size-$p-r$r.txt")
					log "hits $size round $r $p: $rps req/s, p99 $p99 ms, $cpu CPU µs per hit"
					rr[$p]=$rps pp[$p]=$p99
					RPS[$p]="${RPS[$p]:-} $rps" P99[$p]="${P99[$p]:-} $p99" CPU[$p]="${CPU[$p]:-} $cpu"
				done
				for p in "${peers[@]}"; do
					RR[$p]="${RR[$p]:-} $(awk -v a="${rr[$p]}" -v b="${rr[nginx]}" 'BEGIN { print a / b }')"
					PR[$p]="${PR[$p]:-} $(awk -v a="${pp[$p]}" -v b="${pp[nginx]}" 'BEGIN { print a / b }')"
				done
			done
			for p in "${peers[@]}"; do
				printf '| %s | %s | %.0f | %.2f | %.2f | %.2f | %.1f |\n' "$((size / 1024)) KB" "$p" \
					"$(echo "${RPS[$p]}" | median)" "$(echo "${RR[$p]}" | median)" \
					"$(echo "${P99[$p]}" | median)" "$(echo "${PR[$p]}" | median)" \
					"$(echo "${CPU[$p]}" | median)" >>"$results"
			done
			stop nginx
			stop ur-memory
			stop ur-l1
			stop memcached
			stop origin
		done
		echo >>"$results"
		;;
	*) die "TABLES: unknown table $table (rss, hits)" ;;
	esac
done
{
	echo "Machine: $(nproc) CPUs, $(uname -sr), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);"
	echo "$("$NGINX" -v 2>&1), $("$MEMCACHED" -V 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)."
} >>"$results"
cat "$results"
