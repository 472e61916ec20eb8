#!/usr/bin/env bash
# bench/hitcpu.sh: CPU time per cache hit of userrouter (memory store, and
# memcached + L1) and of nginx proxy_cache, at each page size (issue 19).
# A load-robust measure: on a machine shared with other work, req/s swing,
# but the CPU a process spends per request does not (much).
#
#   make build && bash bench/hitcpu.sh
#
# For each size: 100 pages warmed in each peer, then wrk -t2 -c64 for
# DURATION on them at random; the peer's utime+stime (/proc/PID/stat, all
# nginx workers summed) over the run divided by the requests wrk completed.
# Prints one line per size and peer: size, peer, requests, the peer's CPU-µs
# per request and wrk's (time -f %U+%S), req/s and p99 (meaningless under load).
#
# Settings (environment): DURATION (3s), SIZES ("16384 131072 524288"),
# PEERS ("nginx ur-memory ur-l1"), BIN (./bin).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
DURATION=${DURATION:-3s}
read -r -a PAGE_SIZES <<<"${SIZES:-16384 131072 524288}"
read -r -a PEERS <<<"${PEERS:-nginx ur-memory ur-l1}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
MEMCACHED=$(command -v memcached)
TCK=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/userrouter-hitcpu.XXXXXX")
chmod 755 "$tmp"
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
die() { echo "hitcpu: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % 20000))
		port_open "$p" || { echo "$p"; return 0; }
	done
	die "no free port"
}
declare -A PID P
start() { local n=$1; shift; "$@" >"$tmp/$n.log" 2>&1 & pids+=($!); PID[$n]=$!; }
stop() { kill -TERM "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }
wait_url() {
	for ((i = 0; i < 100; i++)); do
		curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$tmp/$1.log" >&2
	die "$1 did not answer $2"
}
cat >"$tmp/pages.lua" <<'LUA'
local n = tonumber(os.getenv("PAGES"))
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
request = function() return wrk.format("GET", "/page/" .. math.random(0, n - 1)) end
LUA

# ticks PID...: utime+stime of the processes, in clock ticks.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
# procs NAME: the processes whose CPU is the peer's (nginx: its workers too).
procs() { echo "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true); }

router() { # NAME cache-lines...
	local name=$1 port admin
	shift
	port=$(free_port) admin=$(free_port)
	cat >"$tmp/$name.toml" <<TOML
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
TOML
	start "$name" "$BIN/userrouter" -config "$tmp/$name.toml"
	wait_url "$name" "http://127.0.0.1:$admin/readyz"
	P[$name]=$port
}
nginx_up() {
	P[nginx]=$(free_port)
	rm -rf "$tmp/nginx"
	mkdir -p "$tmp/nginx"
	cat >"$tmp/nginx.conf" <<NGX
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
NGX
	start nginx "$NGINX" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -p "$tmp/nginx" -g 'daemon off;'
	wait_url nginx "http://127.0.0.1:${P[nginx]}/healthz"
}

for size in "${PAGE_SIZES[@]}"; do
	P_ORIGIN=$(free_port)
	start origin "$BIN/origin" -addr "127.0.0.1:$P_ORIGIN" -size "$size" -render 0 -workers 64 -max-age 1h -sqlite "$tmp/db.sqlite3"
	wait_url origin "http://127.0.0.1:$P_ORIGIN/healthz"
	for peer in "${PEERS[@]}"; do
		case $peer in
		nginx) nginx_up ;;
		ur-memory) router ur-memory 'store = "memory"' 'memory_size = "256MiB"' 'item_size_limit = "1MiB"' ;;
		ur-l1)
			P_MC=$(free_port)
			u=()
			[ "$(id -u)" = 0 ] && u=(-u root)
			start memcached "$MEMCACHED" -l 127.0.0.1 -p "$P_MC" -U 0 -m 1024 -t 2 "${u[@]}"
			for ((i = 0; i < 50; i++)); do port_open "$P_MC" && break; sleep 0.1; done
			router ur-l1 "servers = [\"127.0.0.1:$P_MC\"]" 'l1_size = "256MiB"' 'item_size_limit = "1MiB"'
			;;
		esac
		for ((i = 0; i < 100; i++)); do curl -fsS -o /dev/null "http://127.0.0.1:${P[$peer]}/page/$i"; done
		for ((i = 0; i < 100; i++)); do curl -fsS -o /dev/null "http://127.0.0.1:${P[$peer]}/page/$i"; done
		st=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:${P[$peer]}/page/99" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" { print $2 }')
		case "$st" in *HIT* | *"; hit"*) ;; *) die "$peer: /page/99 is not a hit after warming: \"$st\"" ;; esac
		ps=$(procs "$peer")
		t0=$(ticks $ps)
		PAGES=100 /usr/bin/time -f "%U %S" -o "$tmp/wrk.time" wrk -t2 -c64 -d"$DURATION" --latency -s "$tmp/pages.lua" "http://127.0.0.1:${P[$peer]}/" >"$tmp/wrk.out" 2>&1
		t1=$(ticks $ps)
		n=$(awk '/requests in/ { print $1 }' "$tmp/wrk.out")
		rps=$(awk '/Requests\/sec/ { print $2 }' "$tmp/wrk.out")
		p99=$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.out")
		w=$(awk '{ print $1 + $2 }' "$tmp/wrk.time")
		awk -v s="$size" -v p="$peer" -v n="$n" -v t=$((t1 - t0)) -v hz="$TCK" -v r="$rps" -v q="$p99" -v w="$w" \
			'BEGIN { printf "%7d %-10s %8d req  %6.1f cpu-us/req  wrk %5.1f cpu-us/req  (%s req/s, p99 %s)\n", s, p, n, t * 1e6 / hz / n, w * 1e6 / n, r, q }'
		stop "$peer"
		[ "$peer" != ur-l1 ] || stop memcached
	done
	stop origin
done
