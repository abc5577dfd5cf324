#!/usr/bin/env bash
# Benchmark: the OCI backend against the real docker-registry (Debian), in
# one run on this machine:
#   - cold and warm `GET /api/v1/extensions` over a namespace of 50
#     extensions x 10 versions, next to a serial replay of the same registry
#     requests (what one-after-another round trips would cost);
#   - download throughput of a 200 MB artifact from the artifact cache vs
#     nginx serving the same file, and the daemon's peak RSS.
#
#   bench/oci.sh [extensions] [versions] [megabytes]    (default 50 10 200)
#   DL_RUNS=7 bench/oci.sh 5 2 200      (download figures only matter: small listing)
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=... bench/oci.sh   (use binaries built before)
#
# Download figures, each the median of DL_RUNS (default 5) curl runs:
#   - cold: registry -> cache -> client (one run);
#   - first hit: the first download from the cache after a daemon restart,
#     when the blob is not known good yet and is hashed while it is sent
#     (the last chunk held back until the digest matches); the daemon is
#     restarted before each of these runs;
#   - repeated hit: later downloads of a blob known good (same
#     dev/ino/size/mtime/ctime as when it was hashed), sent unhashed;
#   - nginx serving the same file, runs alternated with the repeated hits.
#
# Not a test: figures vary by machine; compare the ratios. The daemon runs
# with 1 worker thread and nginx with 1 worker process, so curl has the
# other core (2-core machines).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTS=${1:-50}; VERS=${2:-10}; MB=${3:-200}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p extregd -p extreg-tests --bin extregd --bin oci-fixtures
DL_RUNS=${DL_RUNS:-5}
BIN=$TARGET/release/extregd

. bench/lib.sh
# The daemon's default cache folders (persisted catalogue) stay in here.
export XDG_CACHE_HOME=$tmp/xdg-cache

# --- the registry (its access log is how requests are counted) -----------------
start_registry warn on

mkdir -p "$tmp/www"
head -c "${MB}M" /dev/urandom > "$tmp/www/big.tar.gz"
t0=$(date +%s.%N)
DIGEST=$("$TARGET/release/oci-fixtures" "http://127.0.0.1:$RPORT" bench "$EXTS" "$VERS" "$tmp/www/big.tar.gz" | tail -1)
t1=$(date +%s.%N)
printf 'pushed %s extensions x %s versions and a %s MB artifact in %.1f s\n' "$EXTS" "$VERS" "$MB" "$(echo "$t1 - $t0" | bc)"

# --- the daemon ----------------------------------------------------------------
cat > "$tmp/extregd.toml" <<TOML
[server]
port = 0
workers = 1
[oci]
registry = "127.0.0.1:$RPORT"
namespace = "bench"
timeout_seconds = 30
[cache]
artifact_dir = "$tmp/artifacts"
ttl_seconds = 3600
TOML
start_daemon
IDLE_RSS=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)

# --- listing -----------------------------------------------------------------------
before=$(wc -l < "$tmp/registry.log")
COLD=$(curl -sf -o "$tmp/list.json" -w '%{time_total}' "$API/extensions")
after=$(wc -l < "$tmp/registry.log")
COUNT=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$tmp/list.json")
[ "$COUNT" = "$((EXTS + 1))" ] || { echo "listed $COUNT extensions, expected $EXTS + big" >&2; exit 1; }
sed -n "$((before + 1)),${after}p" "$tmp/registry.log" | grep -o '"[A-Z]* /v2/[^ ]*' | tr -d '"' > "$tmp/cold-requests.txt"
UP=$(wc -l < "$tmp/cold-requests.txt")
WARM=$(for _ in $(seq 20); do curl -sf -o /dev/null -w '%{time_total}\n' "$API/extensions"; done | sort -n | sed -n 10p)
# The same registry requests one after another on one keep-alive connection.
replay() {
python3 - "$RPORT" "$1" <<'PY'
import http.client, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
reqs = [l.split(' ', 1) for l in open(path).read().split('\n') if l]
c = http.client.HTTPConnection('127.0.0.1', port)
accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
t = time.monotonic()
for m, p in reqs:
    c.request(m, p, headers={'Accept': accept})
    c.getresponse().read()
print(f'{time.monotonic() - t:.4f}')
PY
}
# The same requests from 8 connections at once: what the registry can do.
replay8() {
python3 - "$RPORT" "$1" <<'PY'
import http.client, sys, time, threading
port, path = int(sys.argv[1]), sys.argv[2]
reqs = [l.split(' ', 1) for l in open(path).read().split('\n') if l]
accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
def run(part):
    c = http.client.HTTPConnection('127.0.0.1', port)
    for m, p in part:
        c.request(m, p, headers={'Accept': accept})
        c.getresponse().read()
threads = [threading.Thread(target=run, args=(reqs[i::8],)) for i in range(8)]
t = time.monotonic()
for th in threads: th.start()
for th in threads: th.join()
print(f'{time.monotonic() - t:.4f}')
PY
}
SERIAL=$(replay "$tmp/cold-requests.txt")
PAR=$(replay8 "$tmp/cold-requests.txt")
# Cold versions of every extension (10 manifests each), fanned out 8 at a time.
vbefore=$(wc -l < "$tmp/registry.log")
VT0=$(date +%s.%N)
python3 -c 'import json,sys; [print(e["type"], e["name"]) for e in json.load(open(sys.argv[1]))]' "$tmp/list.json" \
  | xargs -P 8 -n 2 sh -c 'curl -sf -o /dev/null "$0/extensions/$1/$2/versions"' "$API"
VT1=$(date +%s.%N)
after2=$(wc -l < "$tmp/registry.log")
sed -n "$((vbefore + 1)),${after2}p" "$tmp/registry.log" | grep -o '"[A-Z]* /v2/[^ ]*' | tr -d '"' > "$tmp/versions-requests.txt"
VUP=$(wc -l < "$tmp/versions-requests.txt")
VSERIAL=$(replay "$tmp/versions-requests.txt")
VPAR=$(replay8 "$tmp/versions-requests.txt")

# --- download ------------------------------------------------------------------------
chmod 644 "$tmp/www/big.tar.gz"   # nginx workers run as www-data
start_nginx "$tmp/www" 1024 "sendfile on;"
DL_PATH=/extensions/provider/big/1.0.0
NURL=http://127.0.0.1:$NPORT/big.tar.gz
COLD_DL=$(curl -sf -o "$tmp/cold.bin" -w '%{speed_download}' "$API$DL_PATH")
cmp -s "$tmp/cold.bin" "$tmp/www/big.tar.gz" || { echo "the daemon served other bytes" >&2; exit 1; }
rm -f "$tmp/cold.bin"
COLD_RSS=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status)
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
one() { # url -> bytes/s; the answer must be a cache hit of the whole artifact
  local out; out=$(curl -sf -o /dev/null -D "$tmp/h" -w '%{speed_download} %{size_download}' "$1")
  read -r sp sz <<<"$out"
  [ "$sz" = "$((MB * 1024 * 1024))" ] || { echo "got $sz bytes from $1" >&2; exit 1; }
  case $1 in *"$DL_PATH") grep -qi '^x-extregd-cache: hit' "$tmp/h" || { echo "not a cache hit" >&2; exit 1; } ;; esac
  echo "$sp"
}
# First hits: a fresh daemon each time (known-good stamps live in memory).
FIRST=(); FIRST_RSS=0
for _ in $(seq "$DL_RUNS"); do
  stop_daemon; start_daemon
  FIRST+=("$(one "$API$DL_PATH")")
  r=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status); [ "$r" -gt "$FIRST_RSS" ] && FIRST_RSS=$r
done
# Repeated hits, alternated with nginx.
REP=(); NGX=()
for _ in $(seq "$DL_RUNS"); do
  REP+=("$(one "$API$DL_PATH")")
  NGX+=("$(one "$NURL")")
done
F_SPEED=$(printf '%s\n' "${FIRST[@]}" | median)
D_SPEED=$(printf '%s\n' "${REP[@]}" | median)
N_SPEED=$(printf '%s\n' "${NGX[@]}" | median)
PEAK_RSS=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status)
mbs() { printf '%s\n' "$@" | awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1e6 }'; }

printf '\nListing %s extensions x %s versions, plus the big one (docker-registry on loopback, catalog pages of 100)\n' "$EXTS" "$VERS"
printf '  cold GET /extensions:        %8.1f ms  (%s registry requests)\n' "$(echo "$COLD * 1000" | bc)" "$UP"
printf '  serial replay of those:      %8.1f ms  (one after another, one connection)\n' "$(echo "$SERIAL * 1000" | bc)"
printf '  8-connection replay of those: %7.1f ms  (the registry at full tilt)\n' "$(echo "$PAR * 1000" | bc)"
printf '  warm GET /extensions (p50):  %8.2f ms\n' "$(echo "$WARM * 1000" | bc)"
printf '  cold versions of all %s:     %8.1f ms  (8 clients; %s registry requests)\n' "$EXTS" "$(echo "($VT1 - $VT0) * 1000" | bc)" "$VUP"
printf '  serial replay of those:      %8.1f ms\n' "$(echo "$VSERIAL * 1000" | bc)"
printf '  8-connection replay of those: %7.1f ms\n' "$(echo "$VPAR * 1000" | bc)"
awk -v c="$COLD" -v s="$SERIAL" 'BEGIN { printf "  cold listing / serial replay: %.2fx (below 1: faster than serial round trips)\n", c/s }'
printf '\nDownload of a %s MB artifact (%s)\n' "$MB" "$DIGEST"
awk -v s="$COLD_DL" 'BEGIN { printf "  cold (registry -> cache -> client): %7.0f MB/s\n", s/1e6 }'
awk -v s="$F_SPEED" -v n="$DL_RUNS" 'BEGIN { printf "  first hit after a restart (hashed while sent), median of %d: %7.0f MB/s\n", n, s/1e6 }'
printf '    runs: %s MB/s\n' "$(mbs "${FIRST[@]}")"
awk -v s="$D_SPEED" -v n="$DL_RUNS" 'BEGIN { printf "  repeated hit (known good, unhashed), median of %d:      %7.0f MB/s\n", n, s/1e6 }'
printf '    runs: %s MB/s\n' "$(mbs "${REP[@]}")"
awk -v s="$N_SPEED" -v n="$DL_RUNS" 'BEGIN { printf "  nginx, same file (sendfile), median of %d:              %7.0f MB/s\n", n, s/1e6 }'
printf '    runs: %s MB/s\n' "$(mbs "${NGX[@]}")"
awk -v d="$D_SPEED" -v n="$N_SPEED" 'BEGIN { printf "  ratio repeated hit / nginx: %.2fx (target >= 1.00x)\n", d/n }'
awk -v d="$F_SPEED" -v n="$N_SPEED" 'BEGIN { printf "  ratio first hit / nginx:    %.2fx (target >= 1.00x)\n", d/n }'
awk -v i="$IDLE_RSS" -v c="$COLD_RSS" -v f="$FIRST_RSS" -v k="$PEAK_RSS" -v mb="$MB" 'BEGIN { printf "extregd RSS: idle %.1f MB; peak %.1f MB after listing + cold download, %.1f MB over first hits, %.1f MB over a first hit + repeated hits (artifact %d MB; target < 40 MB)\n", i/1024, c/1024, f/1024, k/1024, mb }'
