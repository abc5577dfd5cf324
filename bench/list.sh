#!/usr/bin/env bash
# Benchmark: the cached list endpoint of extregd against nginx serving the
# same JSON body as a static file, in the same run, on this machine.
#
#   bench/list.sh [seconds-per-run]      (default 10)
#
# Prints requests/s, p50 and p99 latency (wrk -t1 -c32 on loopback), the
# daemon's idle and peak RSS, and the ratios. Not a test: figures vary by
# machine; compare the ratio. The daemon runs with 1 worker thread and nginx
# with 1 worker process, so wrk has the other core (2-core machines).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p extregd
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/extregd

. bench/lib.sh
export XDG_CACHE_HOME=$tmp/xdg-cache   # the daemon's default cache folders stay in here

# A catalogue whose list body is ~9.5 KB, like the reference figures.
types=(provider taskserv cluster)
for i in $(seq 1 20); do
  t=${types[$((i % 3))]}; v="1.$i.0"; d=$tmp/catalog/$t/bench$i/$v
  mkdir -p "$d"
  printf 'extension:\n  name: bench%s\n  version: %s\n  type: %s\n  description: Benchmark extension number %s for the list endpoint\n  author: bench\n  tags: [bench, load, t%s]\n' "$i" "$v" "$t" "$i" "$i" > "$d/extension.yaml"
done
cat > "$tmp/extregd.toml" <<TOML
[server]
port = 0
workers = ${WORKERS:-1}
[local]
path = "$tmp/catalog"
[cache]
artifact_dir = "$tmp/artifacts"
ttl_seconds = 3600
TOML
start_daemon
URL=$API/extensions
mkdir -p "$tmp/www"
curl -sf "$URL" -o "$tmp/www/extensions.json"
chmod 644 "$tmp/www/extensions.json"  # nginx workers run as www-data
BYTES=$(stat -c %s "$tmp/www/extensions.json")
sleep 0.5
IDLE_RSS=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)

start_nginx "$tmp/www" 1024 "" "location / { default_type application/json; }"
NURL=http://127.0.0.1:$NPORT/extensions.json
curl -sf "$NURL" -o "$tmp/nginx-body.json" || { echo "nginx did not answer:" >&2; cat "$tmp/nginx.err" >&2; exit 1; }
cmp -s "$tmp/nginx-body.json" "$tmp/www/extensions.json" || { echo "nginx does not serve the same body" >&2; exit 1; }

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v+0 } else { sub(/s$/, "", v); print v*1000 } }'; }
run() { # url -> "rps p50ms p99ms"
  wrk -t1 -c32 -d2s "$1" >/dev/null
  local out; out=$(wrk -t1 -c32 -d"${SECS}s" --latency "$1")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  echo "$rps $p50 $p99"
}
read -r D_RPS D_P50 D_P99 < <(run "$URL")
PEAK_RSS=$(hwm "$DPID")
read -r N_RPS N_P50 N_P99 < <(run "$NURL")

printf '\nGET /api/v1/extensions (cached), %s-byte JSON body, wrk -t1 -c32 -d%ss, loopback\n' "$BYTES" "$SECS"
printf '%-10s %12s %10s %10s\n' server 'requests/s' 'p50 ms' 'p99 ms'
printf '%-10s %12.0f %10.3f %10.3f\n' extregd "$D_RPS" "$D_P50" "$D_P99"
printf '%-10s %12.0f %10.3f %10.3f\n' nginx "$N_RPS" "$N_P50" "$N_P99"
awk -v d="$D_RPS" -v n="$N_RPS" 'BEGIN { printf "ratio extregd/nginx requests/s: %.2fx (target >= 1.00x)\n", d/n }'
awk -v p="$D_P99" 'BEGIN { printf "extregd p99: %.3f ms (target < 1 ms)\n", p }'
awk -v i="$IDLE_RSS" -v k="$PEAK_RSS" 'BEGIN { printf "extregd RSS: idle %.1f MB, peak under load %.1f MB (target idle < 15 MB)\n", i/1024, k/1024 }'
