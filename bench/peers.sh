#!/usr/bin/env bash
# bench/peers.sh: userrouter against its peers, on this machine.
#
#   make bench-peers        # builds bin/, then runs this script
#
# It starts, on 127.0.0.1 ports nothing else listens on:
#
#   origin          bin/origin: 20 KiB pages, no render time, 64 workers,
#                   Django-format sessions in a SQLite file
#   memcached       one instance, for userrouter's memcached store and for
#                   nginx's memcached module (different keys)
#   userrouter x2   memcached store; memory store (both check sessions in
#                   the origin's SQLite file)
#   nginx           one instance (worker_processes = CPUs) with two servers:
#                   the memcached module, and proxy_cache
#
# and loads each peer, and the origin alone, with bin/bench in three
# scenarios (anonymous hits, identified forwards, misses), ROUNDS rounds,
# the peers in a rotated order in each round. It prints a Markdown table of
# the medians and writes it, the configurations and every run's JSON to
# OUT. docs/benchmarks.md explains the method and reads the results.
#
# Settings (environment):
#   PEERS_OUT       output directory              (default ./bench-peers-out)
#   PEERS_DURATION  measured time of a run        (default 5s)
#   PEERS_WARMUP    warm-up before each run       (default 1s)
#   PEERS_ROUNDS    rounds                        (default 3)
#   PEERS_CONNS     connections                   (default 64)
#   PEERS_SCENARIOS which scenarios, in order  (default "hits identified misses")
#   PEERS_BENCH_CPUS pin bench to these CPUs with taskset, e.g. "1"
#                   (default: no pinning)
#   PEERS_LIMIT     seconds before everything is stopped, whatever happens
#                   (default: what the runs take, with room to spare;
#                   666 for the defaults)
#   BIN             where userrouter, bench and origin are (default ./bin)
#
# nginx, memcached, curl and jq are installed from Debian when missing
# (apt-get; root needed then). Nothing else on the machine is touched: the
# nginx and memcached it runs are its own, and everything it starts is
# stopped, and its temporary directory removed, when it ends, fails, is
# interrupted (Ctrl-C) or runs out of time.
set -euo pipefail

# seconds DURATION: a Go duration ("5s", "500ms", "1m") in whole
# seconds, rounded up.
seconds() {
	awk -v d="$1" 'BEGIN {
		n = d + 0; u = substr(d, length(n "") + 1)
		f = (u == "ms") ? 0.001 : (u == "m") ? 60 : (u == "h") ? 3600 : 1
		s = n * f; print (s == int(s)) ? s : int(s) + 1 }'
}
# The default bound: every run with 3 s to spare, the memcached fill
# before the misses (60 s at most), and 120 s to start and stop.
if [ -z "${PEERS_LIMIT:-}" ]; then
	read -r -a scenarios <<<"${PEERS_SCENARIOS:-hits identified misses}"
	per_run=$(($(seconds "${PEERS_DURATION:-5s}") + $(seconds "${PEERS_WARMUP:-1s}") + 3))
	PEERS_LIMIT=$((${#scenarios[@]} * 6 * ${PEERS_ROUNDS:-3} * per_run + 60 + 120))
fi
LIMIT=$PEERS_LIMIT
# Run under timeout(1) so that the whole run is bounded; --foreground keeps
# Ctrl-C working. On expiry the script gets SIGTERM and cleans up.
if [ -z "${USERROUTER_PEERS_BOUNDED:-}" ]; then
	export USERROUTER_PEERS_BOUNDED=1
	exec timeout --foreground -k 20 "$LIMIT" bash "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${PEERS_OUT:-$ROOT/bench-peers-out}
DURATION=${PEERS_DURATION:-5s}
WARMUP=${PEERS_WARMUP:-1s}
ROUNDS=${PEERS_ROUNDS:-3}
CONNS=${PEERS_CONNS:-64}
read -r -a SCENARIOS <<<"${PEERS_SCENARIOS:-hits identified misses}"
BENCH_CPUS=${PEERS_BENCH_CPUS:-}
for s in "${SCENARIOS[@]}"; do
	case "$s" in hits | identified | misses) ;; *) echo "bench-peers: PEERS_SCENARIOS: unknown scenario \"$s\" (hits, identified, misses)" >&2; exit 2 ;; esac
done

HIT_PAGES=100          # the warm set of the hits and identified scenarios
MISS_PATHS=2000000     # distinct URLs a miss run draws from (a fresh prefix per run)
IDENTIFIED_KEYS=100    # signed-in sessions minted for the identified scenario
PAGE_SIZE=20480

log() { printf 'bench-peers: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- cleanup: whatever this script started, and its files -----------------

tmp=""
pids=()         # long-running processes, stopped at the end
current=""      # the bench run in progress
created_policy=0
started=$SECONDS
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

cleanup() {
	local rc=$?
	# Finish cleaning up even when Ctrl-C is pressed again (or timeout(1)
	# passes the signal on): everything below ends within seconds.
	trap - EXIT
	trap '' INT TERM
	set +e
	local pid i alive
	for pid in "${pids[@]}" $current; do kill -TERM "$pid" 2>/dev/null; done
	# One 5 s grace period for all of them (not 5 s each: timeout(1)
	# kills this script 20 s after its SIGTERM, and whatever is still
	# running then is left behind).
	for ((i = 0; i < 50; i++)); do
		alive=0
		for pid in "${pids[@]}" $current; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[ "$alive" = 1 ] || break
		sleep 0.1
	done
	for pid in "${pids[@]}" $current; do
		if kill -KILL "$pid" 2>/dev/null; then log "process $pid did not stop within 5 s of SIGTERM: killed"; fi
	done
	wait 2>/dev/null
	if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
	if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
	if [ "$rc" != 0 ]; then log "stopped (exit $rc) after $((SECONDS - started)) s; everything it started is stopped and $tmp removed"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "time limit of $LIMIT s reached (PEERS_LIMIT)"; exit 124' TERM

# --- what is needed --------------------------------------------------------

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
missing=()
[ -x "$NGINX" ] || missing+=(nginx)
command -v memcached >/dev/null || missing+=(memcached)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
	command -v apt-get >/dev/null || die "missing ${missing[*]}, and no apt-get to install them with"
	log "installing ${missing[*]} (apt-get)"
	# Debian starts a service when its package is installed (nginx on 80,
	# memcached on 11211); this script runs its own, so forbid that.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
	fi
	apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
	if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; created_policy=0; fi
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
for b in userrouter bench origin; do
	[ -x "$BIN/$b" ] || die "$BIN/$b not found: run make bench-peers (or make build) first"
done
MEMCACHED=$(command -v memcached)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/userrouter-peers.XXXXXX")
mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT/conf"
mkdir -p "$OUT/raw" "$OUT/conf"

# --- ports and processes ---------------------------------------------------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports are picked below the kernel's ephemeral range: a port in it may be
# the local end of some client connection (or of one in TIME-WAIT), and
# then binding to it fails even though nothing listens there.
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
[ "$eph_lo" -gt 12000 ] || eph_lo=32768
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
# start NAME CMD...: run CMD in the background, output to $tmp/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	PID[$name]=$!
}

# wait_url NAME URL: wait up to 10 s for URL to answer 200.
wait_url() {
	local i
	for ((i = 0; i < 100; i++)); do
		if curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null; then return 0; fi
		kill -0 "${PID[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	log "$1 did not answer $2 (within 10 s, or it exited); its log:"
	cat "$tmp/$1.log" "$tmp/$1-error.log" >&2 2>/dev/null || true
	exit 1
}

P_ORIGIN=$(free_port)
P_MC=$(free_port)
P_URMC=$(free_port) P_URMC_ADMIN=$(free_port)
P_URMEM=$(free_port) P_URMEM_ADMIN=$(free_port)
P_URL1=$(free_port) P_URL1_ADMIN=$(free_port)
P_FILL=$(free_port) P_FILL_ADMIN=$(free_port)
P_NGMC=$(free_port)
P_NGPC=$(free_port)
NCPU=$(nproc)
DB=$tmp/db.sqlite3

log "temporary directory $tmp, output $OUT, time limit $LIMIT s"

# The origin: a stand-in Django site. No render time, so what is measured
# is what each peer adds; enough workers that it never queues.
start origin "$BIN/origin" -addr "127.0.0.1:$P_ORIGIN" -size "$PAGE_SIZE" -render 0 -workers 64 \
	-max-age 1h -sqlite "$DB"
wait_url origin "http://127.0.0.1:$P_ORIGIN/healthz"

mc_user=()
[ "$(id -u)" = 0 ] && mc_user=(-u root) # memcached refuses to run as root without -u
start memcached "$MEMCACHED" -l 127.0.0.1 -p "$P_MC" -U 0 -m 1024 -t 2 -c 4096 "${mc_user[@]}"
for ((i = 0; i < 50; i++)); do port_open "$P_MC" && break; sleep 0.1; done
port_open "$P_MC" || { cat "$tmp/memcached.log" >&2; die "memcached did not start on 127.0.0.1:$P_MC"; }

# userrouter's configurations: the defaults, except what names this setup.
router_conf() { # addr admin store-lines...
	local addr=$1 admin=$2
	shift 2
	cat <<EOF
# written by bench/peers.sh
[listen]
addr = "127.0.0.1:$addr"
admin_addr = "127.0.0.1:$admin"
[backend]
addrs = ["127.0.0.1:$P_ORIGIN"]
[session]
driver = "sqlite"
dsn = "$DB"
[cache]
$(printf '%s\n' "$@")
[log]
level = "warn"
EOF
}
router_conf "$P_URMC" "$P_URMC_ADMIN" 'store = "memcached"' "servers = [\"127.0.0.1:$P_MC\"]" >"$tmp/ur-memcached.toml"
router_conf "$P_URMEM" "$P_URMEM_ADMIN" 'store = "memory"' 'memory_size = "512MiB"' >"$tmp/ur-memory.toml"
# memcached with the in-process tier: purges through another instance
# reach it within l1_ttl (1 s).
router_conf "$P_URL1" "$P_URL1_ADMIN" 'store = "memcached"' "servers = [\"127.0.0.1:$P_MC\"]" 'prefix = "l1:"' 'l1_size = "256MiB"' >"$tmp/ur-l1.toml"
# The filler writes pages where and as nginx's memcached module reads them:
# the body alone under "page:$request_uri". The origin tags its pages
# (Surrogate-Key), and raw values have nowhere to keep tags, so userrouter
# would not store them: tag_headers = [] makes it ignore the tags.
router_conf "$P_FILL" "$P_FILL_ADMIN" 'store = "memcached"' "servers = [\"127.0.0.1:$P_MC\"]" \
	'format = "raw"' 'raw_fill = true' 'key = "page:{uri}"' "hosts = [\"127.0.0.1:$P_FILL\"]" 'tag_headers = []' \
	| sed '/^\[session\]/,/^dsn/d' >"$tmp/ur-raw-filler.toml"
for c in ur-memcached ur-memory ur-l1 ur-raw-filler; do
	check=$("$BIN/userrouter" -check -config "$tmp/$c.toml" 2>&1) || { echo "$check" >&2; die "$c.toml does not pass userrouter -check"; }
done

start ur-memcached "$BIN/userrouter" -config "$tmp/ur-memcached.toml"
start ur-memory "$BIN/userrouter" -config "$tmp/ur-memory.toml"
start ur-l1 "$BIN/userrouter" -config "$tmp/ur-l1.toml"
wait_url ur-memcached "http://127.0.0.1:$P_URMC_ADMIN/readyz"
wait_url ur-memory "http://127.0.0.1:$P_URMEM_ADMIN/readyz"
wait_url ur-l1 "http://127.0.0.1:$P_URL1_ADMIN/readyz"

# nginx: one instance, two servers. Keep-alive everywhere, to the clients
# (no limit on requests per connection), to the origin and to memcached.
# nginx's workers run as nobody when it is started as root: they need to
# reach $tmp; nginx creates its cache and temp directories for them.
chmod 755 "$tmp"
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
# written by bench/peers.sh
worker_processes $NCPU;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    default_type "text/html; charset=utf-8";
    client_body_temp_path $tmp/nginx/client_body;
    proxy_temp_path $tmp/nginx/proxy;
    fastcgi_temp_path $tmp/nginx/fastcgi;
    uwsgi_temp_path $tmp/nginx/uwsgi;
    scgi_temp_path $tmp/nginx/scgi;

    upstream origin {
        server 127.0.0.1:$P_ORIGIN;
        keepalive 64;
        keepalive_requests 1000000;
    }
    upstream memcached {
        server 127.0.0.1:$P_MC;
        keepalive 64;
        keepalive_requests 1000000;
    }

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;

    # Cache-Status headers in the form of RFC 9211, so that bench counts
    # hits and forwards the same way for every peer.
    map \$cookie_sessionid \$mc_forward {
        ""      "nginx-memcached; fwd=miss";
        default "nginx-memcached; fwd=bypass; detail=cookie";
    }
    map \$upstream_cache_status \$pc_status {
        HIT         "nginx-proxy-cache; hit";
        STALE       "nginx-proxy-cache; hit; detail=stale";
        UPDATING    "nginx-proxy-cache; hit; detail=updating";
        REVALIDATED "nginx-proxy-cache; hit; detail=revalidated";
        MISS        "nginx-proxy-cache; fwd=miss";
        EXPIRED     "nginx-proxy-cache; fwd=stale";
        BYPASS      "nginx-proxy-cache; fwd=bypass; detail=cookie";
        default     "nginx-proxy-cache; fwd=uri-miss";
    }

    # nginx's memcached module: pages another program wrote (here a
    # userrouter with format = "raw"), read under "page:\$request_uri".
    # Anyone with a session cookie, and every miss, goes to the origin.
    server {
        listen 127.0.0.1:$P_NGMC;
        location / {
            error_page 404 502 504 418 = @origin;
            if (\$cookie_sessionid) {
                return 418;
            }
            set \$memcached_key "page:\$request_uri";
            memcached_pass memcached;
            add_header Cache-Status "nginx-memcached; hit";
        }
        location @origin {
            proxy_pass http://origin;
            add_header Cache-Status \$mc_forward;
        }
    }

    # nginx proxy_cache: stores what the origin answers without a session
    # cookie; anyone with one bypasses it.
    proxy_cache_path $tmp/nginx/cache levels=1:2 keys_zone=pages:64m max_size=1g inactive=10m use_temp_path=off;
    server {
        listen 127.0.0.1:$P_NGPC;
        location / {
            proxy_pass http://origin;
            proxy_cache pages;
            proxy_cache_key \$scheme\$http_host\$request_uri;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            proxy_cache_bypass \$cookie_sessionid;
            proxy_no_cache \$cookie_sessionid;
            add_header Cache-Status \$pc_status;
        }
    }
}
EOF
"$NGINX" -t -q -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -p "$tmp/nginx" -g 'daemon off;' 2>"$tmp/nginx-t.log" ||
	{ cat "$tmp/nginx-t.log" >&2; die "nginx refuses $tmp/nginx.conf"; }
start nginx "$NGINX" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf" -p "$tmp/nginx" -g 'daemon off;'
wait_url nginx "http://127.0.0.1:$P_NGPC/healthz"
wait_url nginx "http://127.0.0.1:$P_NGMC/healthz"

cp "$tmp/ur-memcached.toml" "$tmp/ur-memory.toml" "$tmp/ur-l1.toml" "$tmp/ur-raw-filler.toml" "$tmp/nginx.conf" "$OUT/conf/"

# --- sessions, and the warm sets -------------------------------------------

# Every curl below has --max-time: bash runs the INT and TERM traps only
# once the foreground command has ended, so an unbounded one could hold
# the script past timeout(1)'s final SIGKILL, and leave its processes.

# Signed-in sessions, as Django's login writes them; one cookie per line.
curl -fsS --max-time 10 -X POST -o /dev/null -D "$tmp/login.headers" "http://127.0.0.1:$P_ORIGIN/login?n=[1-$IDENTIFIED_KEYS]"
sed -n 's/^[Ss]et-[Cc]ookie: sessionid=\([a-z0-9]*\);.*/\1/p' "$tmp/login.headers" >"$tmp/identified.txt"
[ "$(wc -l <"$tmp/identified.txt")" = "$IDENTIFIED_KEYS" ] || die "minting $IDENTIFIED_KEYS sessions at /login gave $(wc -l <"$tmp/identified.txt")"

# nginx's memcached module cannot fill itself: a userrouter in raw mode
# writes the warm pages for it, then stops.
start ur-raw-filler "$BIN/userrouter" -config "$tmp/ur-raw-filler.toml"
wait_url ur-raw-filler "http://127.0.0.1:$P_FILL_ADMIN/readyz"
curl -fsS --max-time 10 -o /dev/null "http://127.0.0.1:$P_FILL/page/[0-$((HIT_PAGES - 1))]"
kill -TERM "${PID[ur-raw-filler]}"
wait "${PID[ur-raw-filler]}" || true
# Forget it: its PID is free again, and the cleanup must not signal
# whatever process gets it next.
for i in "${!pids[@]}"; do [ "${pids[$i]}" != "${PID[ur-raw-filler]}" ] || unset 'pids[i]'; done

# The other caches warm themselves: one request per page.
for p in $P_URMC $P_URMEM $P_URL1 $P_NGPC; do
	curl -fsS --max-time 10 -o /dev/null "http://127.0.0.1:$p/page/[0-$((HIT_PAGES - 1))]"
done
for p in $P_URMC $P_URMEM $P_URL1 $P_NGMC $P_NGPC; do
	st=$(curl -fsS --max-time 10 -o /dev/null -D - "http://127.0.0.1:$p/page/$((HIT_PAGES - 1))" | tr -d '\r' | sed -n 's/^[Cc]ache-[Ss]tatus: //p')
	case "$st" in *"; hit"*) ;; *) die "127.0.0.1:$p/page/$((HIT_PAGES - 1)) is not a hit after warming: Cache-Status \"$st\"" ;; esac
done

# --- the runs --------------------------------------------------------------

PEERS=(origin ur-memcached ur-memory ur-l1 nginx-memcached nginx-proxy-cache)
declare -A PORT=([origin]=$P_ORIGIN [ur-memcached]=$P_URMC [ur-memory]=$P_URMEM [ur-l1]=$P_URL1 [nginx-memcached]=$P_NGMC [nginx-proxy-cache]=$P_NGPC)

runs=$OUT/runs.tsv
printf 'scenario\tround\tpeer\treq_per_s\tp50_ms\tp99_ms\thit_ratio\terrors\tnon_200\tforward_ok\n' >"$runs"
problems=()

# run SCENARIO ROUND PEER
run() {
	local scenario=$1 round=$2 peer=$3 base="http://127.0.0.1:${PORT[$3]}"
	local args=(-c "$CONNS" -duration "$DURATION" -warmup "$WARMUP" -json)
	case "$scenario" in
	hits) args+=(-url "$base/" -paths "$HIT_PAGES") ;;
	identified) args+=(-url "$base/" -paths "$HIT_PAGES" -identified 1 -identified-keys "$tmp/identified.txt") ;;
	misses) args+=(-url "$base/miss-r$round/" -paths "$MISS_PATHS") ;;
	esac
	local json=$OUT/raw/$scenario-r$round-$peer.json
	local pin=()
	[ -z "$BENCH_CPUS" ] || pin=(taskset -c "$BENCH_CPUS")
	"${pin[@]}" "$BIN/bench" "${args[@]}" >"$json" 2>"$tmp/bench.err" &
	current=$!
	wait "$current" || { cat "$tmp/bench.err" >&2; die "bench failed on $peer ($scenario, round $round)"; }
	current=""
	# forward_ok: the share of answers that went where the scenario says
	# (hits: served from the cache; identified: forwarded as identified,
	# for userrouter after its session check; misses: not from the cache;
	# the origin alone: nothing from a cache).
	local row
	row=$(jq -r --arg s "$scenario" --arg p "$peer" '
		(.cache_classes // {}) as $c
		| ([.status_codes | to_entries[] | select(.key != "200") | .value] | add // 0) as $non200
		| (if $p == "origin" then 1 - .hit_ratio
		   elif $s == "hits" then .hit_ratio
		   elif $s == "misses" then 1 - .hit_ratio
		   elif ($p | startswith("ur-")) then ((($c["fwd=bypass"].details // {})["detail=identified"] // 0) / .responses)
		   else ((($c["fwd=bypass"].count) // 0) / .responses) end) as $ok
		| [.requests_per_second, .latency_ms.p50, .latency_ms.p99, .hit_ratio, .errors, $non200, $ok]
		| @tsv' "$json")
	printf '%s\t%s\t%s\t%s\n' "$scenario" "$round" "$peer" "$row" >>"$runs"
	local rps p50 p99 hit errors non200 ok
	IFS=$'\t' read -r rps p50 p99 hit errors non200 ok <<<"$row"
	printf '  %-10s round %s  %-18s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  hit %6.2f%%  errors %s  non-200 %s\n' \
		"$scenario" "$round" "$peer" "$rps" "$p50" "$p99" "$(awk -v h="$hit" 'BEGIN { print 100 * h }')" "$errors" "$non200" >&2
	local want
	case "$scenario" in
	hits) want=0.99 ;;
	identified) want=0.99 ;;
	misses) want=0.95 ;;
	esac
	if [ "$errors" != 0 ] || [ "$non200" != 0 ] || awk -v o="$ok" -v w="$want" 'BEGIN { exit !(o < w) }'; then
		problems+=("$scenario round $round $peer: errors $errors, non-200 answers $non200, share as expected $ok (want >= $want); see $json")
	fi
}

# mc_stat NAME: memcached's statistic NAME ("stats"), or nothing.
mc_stat() {
	local tag k v
	exec 3<>"/dev/tcp/127.0.0.1/$P_MC" || return 0
	printf 'stats\r\nquit\r\n' >&3
	while IFS=$' \r' read -r -t 5 tag k v <&3; do
		[ "$tag $k" != "STAT $1" ] || echo "$v"
	done
	exec 3<&-
}

# fill_memcached: misses write pages, and a memcached in production is
# full (its memory all allocated, the least recently used items evicted),
# where a new one spends its first -m bytes faulting pages in: misses
# through the memcached store ran about 20 % slower on an empty memcached
# than on a full one (docs/benchmarks.md). So before the misses runs,
# userrouter's misses under a prefix of their own fill memcached until it
# evicts: 2 s runs, at most 30.
fill_memcached() {
	local i ev
	for ((i = 1; i <= 30; i++)); do
		ev=$(mc_stat evictions)
		[ "${ev:-0}" = 0 ] || break
		"$BIN/bench" -url "http://127.0.0.1:$P_URMC/fill-$i/" -paths "$MISS_PATHS" -c "$CONNS" -duration 2s -warmup 0s -json >/dev/null 2>"$tmp/bench.err" &
		current=$!
		wait "$current" || { cat "$tmp/bench.err" >&2; die "bench failed filling memcached through userrouter"; }
		current=""
	done
	ev=$(mc_stat evictions)
	if [ "${ev:-0}" = 0 ]; then
		log "memcached still not full after $((i - 1)) fill runs of 2 s: the misses runs measure one still filling"
	else
		log "memcached full before the misses runs: $(mc_stat bytes) bytes in items, $ev evictions, after $((i - 1)) fill runs of 2 s"
	fi
}

log "runs: ${#SCENARIOS[@]} scenarios x ${#PEERS[@]} peers x $ROUNDS rounds, $DURATION each after $WARMUP of warm-up, $CONNS connections"
for scenario in "${SCENARIOS[@]}"; do
	[ "$scenario" != misses ] || fill_memcached
	for ((round = 1; round <= ROUNDS; round++)); do
		# Rotate the order each round, so no peer always runs first or last.
		for ((k = 0; k < ${#PEERS[@]}; k++)); do
			run "$scenario" "$round" "${PEERS[$(((k + round - 1) % ${#PEERS[@]}))]}"
		done
	done
done

# --- the table -------------------------------------------------------------

machine() {
	local cpu mem
	cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	echo "- CPU: ${cpu:-unknown}, $NCPU CPUs$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *\(.*\)/ (virtual machine, \1)/p')"
	echo "- RAM: $mem"
	echo "- kernel: $(uname -sr)"
	echo "- OS: $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") (debian_version $(cat /etc/debian_version 2>/dev/null || echo '?'))"
	local gov
	gov=$(go version "$BIN/userrouter" 2>/dev/null | awk '{ print $2 }')
	echo "- Go (the binaries): ${gov:-?}; $("$BIN/userrouter" -version 2>&1 | head -1)"
	echo "- $("$NGINX" -v 2>&1); $("$MEMCACHED" -V 2>&1)"
	echo "- load average (1, 5, 15 min) when the script started: $loadavg_start"
}

table() {
	awk -F'\t' -v rounds="$ROUNDS" '
	function median(list,    n, a, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
	}
	function add(arr, k, v) { arr[k] = (k in arr) ? arr[k] " " v : v }
	NR > 1 {
		rps[$1, $2, $3] = $4
		add(R, $1 SUBSEP $3, $4); add(P50, $1 SUBSEP $3, $5); add(P99, $1 SUBSEP $3, $6)
		add(H, $1 SUBSEP $3, $7); E[$1, $3] += $8
	}
	END {
		ns = split("hits identified misses", S, " ")
		np = split("origin ur-memcached ur-memory ur-l1 nginx-memcached nginx-proxy-cache", P, " ")
		name["origin"] = "origin alone"
		name["ur-memcached"] = "userrouter, memcached store"
		name["ur-memory"] = "userrouter, memory store"
		name["ur-l1"] = "userrouter, memcached + L1"
		name["nginx-memcached"] = "nginx memcached module"
		name["nginx-proxy-cache"] = "nginx proxy_cache"
		peer["ur-memcached"] = "nginx-memcached"; peer["ur-memory"] = "nginx-proxy-cache"; peer["ur-l1"] = "nginx-proxy-cache"
		print "| scenario | peer | req/s | × origin alone | × nginx counterpart | p50 ms | p99 ms | hit ratio | errors |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|"
		for (s = 1; s <= ns; s++) for (p = 1; p <= np; p++) {
			sc = S[s]; pe = P[p]
			if (!((sc SUBSEP pe) in R)) continue
			vo = ""; vn = ""
			for (r = 1; r <= rounds; r++) {
				if ((sc, r, "origin") in rps) vo = vo " " rps[sc, r, pe] / rps[sc, r, "origin"]
				if ((pe in peer) && ((sc, r, peer[pe]) in rps)) vn = vn " " rps[sc, r, pe] / rps[sc, r, peer[pe]]
			}
			printf "| %s | %s | %.0f | %s | %s | %.2f | %.2f | %.1f%% | %d |\n", sc, name[pe], median(R[sc, pe]),
				vo == "" ? "" : sprintf("%.2f", median(vo)), vn == "" ? "—" : sprintf("%.2f", median(vn)),
				median(P50[sc, pe]), median(P99[sc, pe]), 100 * median(H[sc, pe]), E[sc, pe]
		}
	}' "$runs"
}

{
	echo "## userrouter and its peers, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Rounds: $ROUNDS of each scenario; in each round every peer loaded by bin/bench for $DURATION after $WARMUP of"
	echo "warm-up, $CONNS connections, in a rotated order. req/s, p50 and p99 are medians over the rounds; the"
	echo "ratios are medians of the per-round ratios of req/s (× nginx counterpart: userrouter's memcached store"
	echo "against nginx's memcached module, its memory store against proxy_cache). Errors are summed over the rounds."
	echo "bench runs Go code on $(jq -r .procs "$(ls "$OUT"/raw/*.json | head -1)") CPU(s) (its default: half the CPUs), $([ -n "$BENCH_CPUS" ] && echo "pinned with taskset -c $BENCH_CPUS" || echo "not pinned"); nothing else is pinned."
	echo
	table
	echo
	echo "Machine:"
	echo
	machine
	if [ ${#problems[@]} -gt 0 ]; then
		echo
		echo "Runs that did not go as the scenario expects:"
		echo
		printf -- '- %s\n' "${problems[@]}"
	fi
} >"$OUT/results.md"

echo
cat "$OUT/results.md"
echo
log "done in $((SECONDS - started)) s; results in $OUT/results.md, every run's JSON in $OUT/raw/, configurations in $OUT/conf/"
[ ${#problems[@]} -eq 0 ] || die "${#problems[@]} run(s) did not go as expected (listed above)"
