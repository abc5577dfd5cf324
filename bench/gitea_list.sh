#!/usr/bin/env bash
# Benchmark: a cold and a warm `GET /api/v1/extensions` through extregd's
# Gitea backend, against the Gitea stand-in of the tests serving an
# organization of 60 extension repositories (3 releases each, with
# SHA256SUMS) behind 20 ms of latency per request.
#
#   bench/gitea_list.sh [runs]      (default 5 cold runs, each on a fresh daemon)
#
# Prints each cold list time, the number of requests the stand-in answered,
# the serial lower bound (20 ms x requests: what fetching one request after
# another would cost at least) and the ratio cold/serial, the median next
# to its target (under 100 ms) and the most requests the stand-in saw in
# flight at once, then the warm (cached) list time. Cold runs keep no persisted catalogue (each starts
# from nothing). Then, on a daemon with `ttl_seconds = 1` and a persisted
# catalogue (issue 13):
#   - read after TTL expiry: one list read once the TTL has passed, timed;
#     it must answer from the cache at once (stale-while-revalidate) while
#     one background refresh asks the stand-in again;
#   - first answer after a restart: the daemon is restarted on the
#     catalogue it wrote, and its first list read is timed (with the
#     requests the stand-in had answered by then).
# Not a test: figures vary by machine; compare ratios.
#
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=... bench/gitea_list.sh   (use binaries built before)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
REPOS=60
LATENCY_MS=${LATENCY_MS:-20}
TARGET=${CARGO_TARGET_DIR:-target}
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p extregd --bin extregd -p extreg-tests --bin gitea-standin
BIN=$TARGET/release/extregd
STANDIN=$TARGET/release/gitea-standin

tmp=$(mktemp -d)
GPID=""; DPID=""
cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null || true
  [ -n "$GPID" ] && kill "$GPID" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
# The daemon's default cache folders stay in here.
export XDG_CACHE_HOME=$tmp/xdg-cache

TOKEN=bench-token-$RANDOM$RANDOM
printf '%s\n' "$TOKEN" > "$tmp/token"; chmod 600 "$tmp/token"
"$STANDIN" --repos "$REPOS" --releases 3 --latency-ms "$LATENCY_MS" --token "$TOKEN" > "$tmp/standin.out" 2> "$tmp/standin.err" &
GPID=$!
for _ in $(seq 100); do grep -q listening "$tmp/standin.out" 2>/dev/null && break; sleep 0.05; done
GURL=$(sed -n 's/.*listening on //p' "$tmp/standin.out")
[ -n "$GURL" ] || { echo "the stand-in did not start:" >&2; cat "$tmp/standin.err" >&2; exit 1; }

stats_total() { curl -sf "$GURL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }

start_daemon() { # [ttl-seconds] [persist]
  local ttl=${1:-3600} persist=${2:-false}
  [ "$persist" = true ] || rm -rf "$tmp/artifacts"
  cat > "$tmp/extregd.toml" <<TOML
[server]
port = 0
[gitea]
url = "$GURL"
organization = "provisioning-extensions"
token_path = "$tmp/token"
timeout_seconds = 10
[cache]
artifact_dir = "$tmp/artifacts"
ttl_seconds = $ttl
persist_catalog = $persist
catalog_path = "$tmp/catalog.json"
TOML
  : > "$tmp/extregd.out"
  EXTREGD_LOG=warn "$BIN" --config "$tmp/extregd.toml" > "$tmp/extregd.out" 2> "$tmp/extregd.err" &
  DPID=$!
  for _ in $(seq 100); do grep -q listening "$tmp/extregd.out" 2>/dev/null && break; sleep 0.05; done
  URL=$(sed -n 's/.*listening on //p' "$tmp/extregd.out")/api/v1/extensions?limit=1000
}
stop_daemon() { kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=""; }

printf 'Gitea backend, cold list: %s repositories, %s ms per request to the stand-in\n' "$REPOS" "$LATENCY_MS"
printf '%-4s %10s %9s %14s %7s\n' run 'cold ms' requests 'serial ms' ratio
colds=()
for run in $(seq "$RUNS"); do
  start_daemon
  before=$(stats_total)
  out=$(curl -s -o "$tmp/body.json" -w '%{http_code} %{time_total}' "$URL")
  after=$(stats_total)
  read -r code secs <<<"$out"
  [ "$code" = 200 ] || { echo "list answered $code:" >&2; cat "$tmp/body.json" >&2; exit 1; }
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/body.json")
  [ "$n" = "$REPOS" ] || { echo "listed $n extensions, expected $REPOS" >&2; exit 1; }
  reqs=$((after - before))
  serial=$((reqs * LATENCY_MS))
  printf '%-4s %10s %9s %14s %7s\n' "$run" "$(ms "$secs")" "$reqs" "$serial" \
    "$(awk -v c="$secs" -v s="$serial" 'BEGIN { printf "%.3f", c * 1000 / s }')"
  colds+=("$secs")
  if [ "$run" = "$RUNS" ]; then
    warm=()
    for _ in $(seq 20); do warm+=("$(curl -s -o /dev/null -w '%{time_total}' "$URL")"); done
    [ "$(stats_total)" = "$after" ] || { echo "the warm list asked Gitea again" >&2; exit 1; }
  fi
  stop_daemon
done
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
cold_med=$(median "${colds[@]}")
warm_med=$(median "${warm[@]}")
printf 'cold list median: %s ms (%s requests; serial lower bound %s ms; ratio %s)\n' \
  "$(ms "$cold_med")" "$reqs" "$serial" "$(awk -v c="$cold_med" -v s="$serial" 'BEGIN { printf "%.3f", c * 1000 / s }')"
printf 'warm list median of 20: %s ms (answered from the list cache, no Gitea request)\n' "$(ms "$warm_med")"
printf '  target: under 100 ms (issue 13; the pipelined listing is 4 round trips deep: org page 1, org page 2, releases, SHA256SUMS = 80 ms at %s ms each)\n' "$LATENCY_MS"
PEAK=$(curl -sf "$GURL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("peak_in_flight", "?"))')
printf 'most requests in flight at the stand-in during the cold runs: %s (default [gitea] concurrency 48)\n' "$PEAK"

# --- read after TTL expiry, first answer after a restart ---------------------------
rm -f "$tmp/catalog.json"
start_daemon 1 true
FILL=$(curl -s -o /dev/null -w '%{time_total}' "$URL")
for _ in $(seq 100); do [ -s "$tmp/catalog.json" ] && break; sleep 0.05; done
[ -s "$tmp/catalog.json" ] || { echo "no catalogue was written" >&2; exit 1; }
sleep 1.5                                   # let the 1 s TTL pass
before=$(stats_total)
read -r code TTL_READ < <(curl -s -o "$tmp/body.json" -w '%{http_code} %{time_total}\n' "$URL")
at_answer=$(stats_total)
[ "$code" = 200 ] || { echo "read after TTL answered $code" >&2; exit 1; }
# The background refresh: the stand-in answers its requests, then stops.
prev=-1; cur=$(stats_total)
for _ in $(seq 100); do
  sleep 0.2; prev=$cur; cur=$(stats_total)
  [ "$cur" -gt "$before" ] && [ "$cur" = "$prev" ] && break
done
REFRESH=$((cur - before))
# Wait for the refreshed catalogue to be written, then restart on it.
sleep 0.5
stop_daemon
start_daemon 1 true
r0=$(stats_total)
read -r code RESTART_READ < <(curl -s -D "$tmp/h" -o "$tmp/body.json" -w '%{http_code} %{time_total}\n' "$URL")
r1=$(stats_total)
AGE=$(tr -d '\r' < "$tmp/h" | awk 'tolower($1)=="age:" {print $2}')
[ "$code" = 200 ] || { echo "first read after restart answered $code" >&2; exit 1; }
n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/body.json")
[ "$n" = "$REPOS" ] || { echo "first answer after restart listed $n extensions, expected $REPOS" >&2; exit 1; }
STALE=$(python3 -c 'import json,sys; print(sum(1 for e in json.load(open(sys.argv[1])) if e.get("stale")))' "$tmp/body.json")
stop_daemon
printf '\nttl_seconds = 1, persisted catalogue; %s ms per request to the stand-in\n' "$LATENCY_MS"
printf 'filling list (cold):               %8s ms\n' "$(ms "$FILL")"
printf 'read after TTL expiry:             %8s ms  (stand-in requests counted just after the answer: %s; the background refresh made %s in all)\n' \
  "$(ms "$TTL_READ")" "$((at_answer - before))" "$REFRESH"
printf '  target: answered from the cache, not after a refetch (a refetch costs the cold list, median %s ms)\n' "$(ms "$cold_med")"
printf 'first answer after a restart:      %8s ms  (%s of %s extensions marked stale, Age: %s s; start-up refresh requests counted just after the answer: %s)\n' \
  "$(ms "$RESTART_READ")" "$STALE" "$n" "${AGE:-none}" "$((r1 - r0))"
printf '  target: answered from the persisted catalogue, not after a cold list (median %s ms)\n' "$(ms "$cold_med")"
