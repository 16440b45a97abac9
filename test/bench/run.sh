#!/usr/bin/env bash
# Benchmarks the agent side by side with nginx proxy_cache and a bare
# net/http server, all on loopback, and prints the Performance tables.
# Everything it starts listens on 127.0.0.1 or a Unix socket in a temp dir,
# and everything it starts is killed on exit. Run with --help for flags.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: test/bench/run.sh [flags]

  --rounds N         hit-throughput rounds, servers in alternation (default 5)
  --duration D       measured time of each hit run, after 1s unmeasured (default 6s)
  --connections N    keep-alive connections of the hit runs (default 64)
  --keys N           distinct keys cached before the memory runs (default 10000)
  --mix-duration D   time of each run over the cached keys (default 5s)
  --herd N           concurrent requests of a cold herd (default 1000)
  --herd-rounds N    cold herds per server (default 3)
  --latency D        upstream latency during the herds (default 50ms)
  --wrk-duration D   time of each wrk cross-check run; 0 skips wrk (default 5s)
  --server-cpus L    CPUs of the servers, for taskset (default 0)
  --client-cpus L    CPUs of the load generator, wrk and simulator (default 1)
  --no-nginx         leave nginx out
  --keep DIR         keep logs and results.jsonl in DIR
EOF
}

ROUNDS=5 DURATION=6s CONNS=64 KEYS=10000 MIX_DURATION=5s HERD=1000 HERD_ROUNDS=3
LATENCY=50ms WRK_DURATION=5s SERVER_CPUS=0 CLIENT_CPUS=1 USE_NGINX=1 KEEP=""
while [[ $# -gt 0 ]]; do
	case "$1" in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--connections) CONNS=$2; shift 2 ;;
	--keys) KEYS=$2; shift 2 ;;
	--mix-duration) MIX_DURATION=$2; shift 2 ;;
	--herd) HERD=$2; shift 2 ;;
	--herd-rounds) HERD_ROUNDS=$2; shift 2 ;;
	--latency) LATENCY=$2; shift 2 ;;
	--wrk-duration) WRK_DURATION=$2; shift 2 ;;
	--server-cpus) SERVER_CPUS=$2; shift 2 ;;
	--client-cpus) CLIENT_CPUS=$2; shift 2 ;;
	--no-nginx) USE_NGINX=0; shift ;;
	--keep) KEEP=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/ecs-metadata-bench.XXXXXX)
chmod 0755 "$WORK" # nginx's workers run as nobody when started by root
BIN=$WORK/bin
RESULTS=$WORK/results.jsonl
PKCS7=/latest/dynamic/instance-identity/pkcs7
HOT=/latest/meta-data/instance-id
STARTED=()

# cleanup kills every process this script started, then keeps or removes
# the work directory.
cleanup() {
	local pid
	for pid in "${STARTED[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n $KEEP ]]; then
		mkdir -p "$KEEP"
		cp "$WORK"/*.log "$WORK"/*.jsonl "$KEEP"/ 2>/dev/null || true
		cp "$WORK"/nginx/error.log "$KEEP"/nginx-error.log 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

need() {
	command -v "$1" >/dev/null || die "$1 is required: $2"
}

# pin runs a command on the given CPUs when taskset is there.
pin() {
	local cpus=$1
	shift
	if [[ -n $cpus ]] && command -v taskset >/dev/null; then
		taskset -c "$cpus" "$@"
	else
		"$@"
	fi
}

# spawn replaces the current (background) shell by a command on the given
# CPUs, so that $! is the command's own PID: use it as `spawn CPUS CMD &`.
spawn() {
	local cpus=$1
	shift
	if [[ -n $cpus ]] && command -v taskset >/dev/null; then
		exec taskset -c "$cpus" "$@"
	fi
	exec "$@"
}

# wait_for runs a test command every 50 ms until it succeeds, 10 s at most.
wait_for() {
	local what=$1
	shift
	for _ in $(seq 200); do
		if "$@" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	die "timed out waiting for $what"
}

# free_port prints a loopback TCP port below the ephemeral range that
# nothing listens on.
free_port() {
	local p
	for p in $(shuf -i 20000-32000 -n 100); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

build() {
	say "building"
	mkdir -p "$BIN"
	(cd "$ROOT" && go build -o "$BIN/" ./cmd/ecs-metadata-agent ./cmd/ecs-metadata-mock \
		./cmd/ecs-metadata-loadgen)
	(cd "$ROOT/test" && go build -o "$BIN/" ./bench/bare ./bench/report)
}

# start_simulator starts the simulator, which stands in for a metadata
# service on another machine. It shares a core with the load generator,
# so it runs at real-time priority where it may (root): at normal
# priority the kernel let the generator, busy sending a herd, hold the
# core for up to 4 ms before the simulator read the request that reached
# it, and the herd's upstream took 54-59 ms instead of 50.
start_simulator() {
	local rt=()
	SIM_PRIORITY="normal priority (chrt -f refused: not root?)"
	if command -v chrt >/dev/null && chrt -f 10 true 2>/dev/null; then
		rt=(chrt -f 10)
		SIM_PRIORITY="SCHED_FIFO 10"
	fi
	spawn "$CLIENT_CPUS" "${rt[@]}" "$BIN/ecs-metadata-mock" --listen 127.0.0.1:0 \
		>"$WORK/mock.log" 2>&1 &
	STARTED+=($!)
	SIM_PID=$!
	wait_for "the simulator" grep -q 'http://' "$WORK/mock.log"
	SIM_URL=$(grep -o 'http://[0-9.:]*' "$WORK/mock.log" | head -1)
	say "simulator $SIM_URL (pid $SIM_PID, $SIM_PRIORITY)"
}

start_agent() {
	spawn "$SERVER_CPUS" "$BIN/ecs-metadata-agent" --upstream "$SIM_URL" \
		--listen 127.0.0.1:0 --listen "unix:$WORK/agent.sock" --admin-listen 127.0.0.1:0 \
		--cache-entries $((KEYS + 2000)) --upstream-rate 10000 --upstream-burst 10000 \
		--consumer-rate 0 2>"$WORK/agent.log" &
	STARTED+=($!)
	AGENT_PID=$!
	wait_for "the agent to be ready" grep -q '"msg":"ready"' "$WORK/agent.log"
	local tcp
	tcp=$(jq -r 'select(.msg=="listening" and .network=="tcp") | .address' "$WORK/agent.log")
	AGENT_ADDR=$(head -1 <<<"$tcp")
	ADMIN_ADDR=$(tail -1 <<<"$tcp")
	say "agent http://$AGENT_ADDR and unix:$WORK/agent.sock (pid $AGENT_PID)"
}

start_nginx() {
	NGINX_PID=""
	if [[ $USE_NGINX == 0 ]]; then return; fi
	if ! command -v nginx >/dev/null; then
		say "nginx not found: skipping it (apt-get install -y nginx to include it)"
		USE_NGINX=0
		return
	fi
	local dir=$WORK/nginx
	NGINX_PORT=$(free_port)
	mkdir -p "$dir/tmp" "$dir/cache"
	: >"$dir/upstream.log"
	sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#127.0.0.1:$NGINX_PORT#g" \
		-e "s#@UPSTREAM@#${SIM_URL#http://}#g" "$ROOT/test/bench/nginx.conf.tmpl" \
		>"$dir/nginx.conf"
	spawn "$SERVER_CPUS" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
		2>"$WORK/nginx.log" &
	STARTED+=($!)
	NGINX_PID=$!
	wait_for "nginx" curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT$HOT"
	# The master, the worker and the cache manager; the cache loader exits
	# within a minute and is left out.
	NGINX_PIDS="$NGINX_PID $(ps -o pid=,args= --ppid "$NGINX_PID" |
		awk '!/cache loader/ { printf "%s ", $1 }')"
	say "nginx $(nginx -v 2>&1 | sed 's/.*: //') http://127.0.0.1:$NGINX_PORT (pids $NGINX_PIDS)"
}

start_bare() {
	local body
	body=$(curl -sf "$SIM_URL$HOT")
	spawn "$SERVER_CPUS" "$BIN/bare" --listen 127.0.0.1:0 --body "$body" >"$WORK/bare.log" 2>&1 &
	STARTED+=($!)
	BARE_PID=$!
	wait_for "the bare server" grep -q 'http://' "$WORK/bare.log"
	BARE_URL=$(grep -o 'http://[0-9.:]*' "$WORK/bare.log" | head -1)
	say "bare $BARE_URL (pid $BARE_PID)"
}

# target_of and pids_of map a server name to its address and its PIDs.
target_of() {
	case "$1" in
	agent-tcp) echo "http://$AGENT_ADDR" ;;
	agent-unix) echo "unix:$WORK/agent.sock" ;;
	nginx) echo "http://127.0.0.1:$NGINX_PORT" ;;
	bare) echo "$BARE_URL" ;;
	esac
}

pids_of() {
	case "$1" in
	agent*) echo "$AGENT_PID" ;;
	nginx) echo "$NGINX_PIDS" ;;
	bare) echo "$BARE_PID" ;;
	esac
}

# loadgen runs the load generator on the client CPUs, watching the PIDs of
# the named server.
loadgen() {
	local server=$1
	shift
	local pid args=()
	for pid in $(pids_of "$server"); do args+=(-pid "$pid"); done
	pin "$CLIENT_CPUS" "$BIN/ecs-metadata-loadgen" -target "$(target_of "$server")" \
		"${args[@]}" "$@"
}

# record appends one JSON result with extra fields merged in.
record() {
	jq -c "$1" >>"$RESULTS"
}

servers() {
	local list=(agent-tcp agent-unix)
	[[ $USE_NGINX == 1 ]] && list+=(nginx)
	list+=(bare)
	echo "${list[@]}"
}

# warm_keys caches KEYS distinct answers (pkcs7 with an audience each) in
# the agent and in nginx.
warm_keys() {
	local s
	for s in agent-tcp $([[ $USE_NGINX == 1 ]] && echo nginx); do
		say "caching $KEYS keys in $s"
		loadgen "$s" -c 8 -d 0 -n "$KEYS" -keys "$KEYS" -path "$PKCS7?audience=k{seq}" \
			-label "warm:$s" -json | record '.'
	done
	AGENT_ENTRIES=$(curl -sf "http://$ADMIN_ADDR/metrics" |
		awk '/^ecs_metadata_agent_cache_entries /{printf "%d", $2}')
	say "agent cache entries: $AGENT_ENTRIES"
}

# mixed_runs load each server over the cached keys and sample its memory.
mixed_runs() {
	local s
	for s in $(servers); do
		[[ $s == agent-unix ]] && continue
		say "key mix: $s, $CONNS connections, $MIX_DURATION"
		loadgen "$s" -c "$CONNS" -d "$MIX_DURATION" -keys "$KEYS" \
			-path "$PKCS7?audience=k{seq}" -label "mixed:$s" -json |
			record ". + {cache_entries: $([[ $s == agent-tcp ]] && echo "$AGENT_ENTRIES" || echo null)}"
	done
}

# agent_counters prints the agent's heap allocations and cache hits so far,
# from its /metrics.
agent_counters() {
	curl -sf "http://$ADMIN_ADDR/metrics" | awk '
		/^go_memstats_mallocs_total / { m = $2 }
		/^ecs_metadata_agent_cache_hits_total / { h = $2 }
		END { printf "%.0f %.0f\n", m, h }'
}

# hit_rounds measure the hot key on every server in turn, the order
# rotated each round so that no server always runs first. For the agent
# they also note heap allocations per hit, the whole server included.
hit_rounds() {
	local round i s list before after allocs
	read -ra list <<<"$(servers)"
	for round in $(seq "$ROUNDS"); do
		for i in "${!list[@]}"; do
			s=${list[$(((i + round - 1) % ${#list[@]}))]}
			say "round $round/$ROUNDS: $s, $CONNS connections, $DURATION"
			before=$(agent_counters)
			loadgen "$s" -c "$CONNS" -d "$DURATION" -warmup 1s -path "$HOT" \
				-label "tput:$s" -json >"$WORK/run.json"
			after=$(agent_counters)
			allocs=null
			if [[ $s == agent-* ]]; then
				allocs=$(awk -v b="$before" -v a="$after" 'BEGIN {
					split(b, x, " "); split(a, y, " ")
					if (y[2] > x[2]) printf "%.2f", (y[1] - x[1]) / (y[2] - x[2]); else print "null"
				}')
			fi
			record ". + {round: $round, allocs_per_request: $allocs}" <"$WORK/run.json"
		done
	done
}

# wrk_runs cross-check the TCP servers with wrk, when it is installed.
wrk_runs() {
	if [[ $WRK_DURATION == 0 || $WRK_DURATION == 0s ]]; then return; fi
	if ! command -v wrk >/dev/null; then
		say "wrk not found: skipping the cross-check"
		return
	fi
	local s
	for s in $(servers); do
		[[ $s == agent-unix ]] && continue
		say "wrk: $s, $CONNS connections, $WRK_DURATION"
		pin "$CLIENT_CPUS" wrk -t1 -c"$CONNS" -d"$WRK_DURATION" --latency \
			"$(target_of "$s")$HOT" | wrk_json "wrk:$s" >>"$RESULTS"
	done
}

# wrk_json turns wrk's text into a result line: req/s and p50/p99 in ms.
wrk_json() {
	awk -v label="$1" '
	function ms(v) {
		if (v ~ /us$/) return v / 1000
		if (v ~ /ms$/) return v + 0
		if (v ~ /s$/) return v * 1000
		return v
	}
	$1 == "50%" { p50 = ms($2) }
	$1 == "99%" { p99 = ms($2) }
	$1 == "Requests/sec:" { rps = $2 }
	/Non-2xx|Socket errors/ { errors = 1 }
	END {
		printf "{\"label\":\"%s\",\"mode\":\"wrk\",\"rps\":%s,\"errors\":%d,", label, rps, errors
		printf "\"latency_ms\":{\"p50\":%s,\"p99\":%s}}\n", p50, p99
	}'
}

sim_faults() {
	curl -sf -X "$1" "$SIM_URL/_simulator/faults?prefix=$PKCS7" ${2:+-d "$2"}
}

sim_upstream_gets() {
	curl -sf "$SIM_URL/_simulator/stats" | jq ".requests[\"GET $PKCS7\"] // 0"
}

# herds send HERD concurrent requests for a fresh cold key through the
# agent and nginx while upstream answers after LATENCY, and the same herd
# to the bare server, which answers at once: the floor of delivering it.
herds() {
	local round s
	for round in $(seq "$HERD_ROUNDS"); do
		for s in agent-tcp $([[ $USE_NGINX == 1 ]] && echo nginx); do
			herd "$s" "$round"
		done
		say "herd $round/$HERD_ROUNDS: bare, $HERD requests, no upstream"
		loadgen bare -herd "$HERD" -timeout 10s -path "$HOT" -label "herd:bare" -json |
			record ". + {round: $round, upstream_requests: null, upstream_latency_ms: 0}"
	done
}

# herd sends one cold herd to server $1 and records it with the upstream
# requests the simulator saw and the upstream time the server measured.
herd() {
	local s=$1 round=$2 ms out ups before seen
	ms=$(awk -v d="$LATENCY" 'BEGIN { v = d + 0; if (d ~ /ms$/) print v; else print v * 1000 }')
	sim_faults POST "{\"latency\":\"$LATENCY\"}"
	curl -sf -X POST "$SIM_URL/_simulator/reset-stats"
	before=$(upstream_time "$s")
	say "herd $round/$HERD_ROUNDS: $s, $HERD requests, upstream latency $LATENCY"
	out=$(loadgen "$s" -herd "$HERD" -timeout 10s \
		-path "$PKCS7?audience=herd-$round-$RANDOM$RANDOM" -label "herd:${s%-tcp}" -json)
	ups=$(sim_upstream_gets)
	seen=$(upstream_ms "$before" "$(upstream_time "$s")")
	sim_faults DELETE
	record ". + {round: $round, upstream_requests: $ups, upstream_latency_ms: $ms,
		upstream_seen_ms: $seen}" <<<"$out"
}

# upstream_time prints what server $1 has measured of its upstream
# requests so far: "SECONDS COUNT", from the agent's histogram or from
# nginx's upstream log (one $upstream_response_time a line).
upstream_time() {
	case "$1" in
	agent*) curl -sf "http://$ADMIN_ADDR/metrics" | awk '
		/^ecs_metadata_agent_upstream_request_duration_seconds_sum / { s = $2 }
		/^ecs_metadata_agent_upstream_request_duration_seconds_count / { n = $2 }
		END { printf "%.6f %d\n", s, n }' ;;
	nginx) awk '{ s += $1 } END { printf "%.6f %d\n", s, NR }' "$WORK/nginx/upstream.log" ;;
	esac
}

# upstream_ms prints the mean upstream time, in ms, of the requests
# between two upstream_time readings, or null when there were none.
upstream_ms() {
	awk -v b="$1" -v a="$2" 'BEGIN {
		split(b, x, " "); split(a, y, " ")
		if (y[2] > x[2]) printf "%.1f", (y[1] - x[1]) * 1000 / (y[2] - x[2]); else print "null"
	}'
}

machine() {
	echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')," \
		"$(free -g | awk '/^Mem:/{print $2}') GiB; kernel $(uname -r)"
	local ngx=absent wrkv=absent
	command -v nginx >/dev/null && ngx=$(nginx -v 2>&1 | sed 's/.*: //')
	command -v wrk >/dev/null && wrkv=$( (wrk -v 2>&1 || true) | awk 'NR==1 { print $2 }')
	echo "Go: $(go version | awk '{print $3}'); nginx: $ngx; wrk: $wrkv"
	echo "Pinning: servers on CPU $SERVER_CPUS (nginx 1 worker, Go GOMAXPROCS from" \
		"the affinity); load generator, wrk and simulator on CPU $CLIENT_CPUS" \
		"(the simulator at $SIM_PRIORITY)"
	echo "Load average (1, 5, 15 min): $1 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
}

main() {
	need go "to build the agent and the tools"
	need curl "to talk to the simulator's control surface"
	need jq "to read the JSON logs and results"
	local begin
	begin=$(cut -d' ' -f1-3 /proc/loadavg)
	build
	start_simulator
	start_agent
	start_nginx
	start_bare
	warm_keys
	mixed_runs
	hit_rounds
	wrk_runs
	# Let the connections of the runs before close (nginx and the kernel
	# tidy up for a moment after wrk), so the first herd is not timed
	# against them.
	sleep 3
	herds
	echo
	machine "$begin"
	echo "Runs: $ROUNDS rounds x $DURATION at $CONNS connections; $KEYS keys;" \
		"herds of $HERD at $LATENCY"
	"$BIN/report" <"$RESULTS"
}

main
