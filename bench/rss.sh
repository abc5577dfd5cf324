#!/usr/bin/env bash
# Benchmark: peak RSS of extregd on every transfer path of one artifact
# (default 200 MB of random bytes), each path on a fresh daemon so its peak
# (VmHWM) is its own, next to references measured in the same run:
#
#   cold local, tarball   {root}/taskserv/bigtar/bigtar-1.0.0.tar.gz, streamed
#   cold local, folder    {root}/taskserv/bigdir/1.0.0/, packed through a temp file
#   publish               `extregd publish` of that folder to docker-registry (no daemon)
#   cold OCI              docker-registry -> artifact cache -> client
#   first cached hit      after a restart: the blob is hashed while it is sent
#   repeated cached hits  the blob is known good: sent unhashed (5 downloads)
#   reference             curl downloading the tarball from nginx (curl's peak
#                         RSS, and the nginx worker's), and `curl -T` uploading
#                         it to the registry
#
#   bench/rss.sh [megabytes]          (default 200)
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=... bench/rss.sh   (use binaries built before)
#
# Target (issue 13): peak RSS under 40 MB on every path. Every download is
# checked (sha256 against the source, or the ETag the daemon verified).
# Not a test: figures vary by machine.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-200}
TARGET_MB=40
for t in nginx docker-registry python3 curl; do
  command -v "$t" >/dev/null || { echo "$t is missing (apt-get install nginx-light docker-registry python3 curl)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "apt-get install time" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p extregd --bin extregd
BIN=$TARGET/release/extregd

. bench/lib.sh
export XDG_CACHE_HOME=$tmp/xdg/cache XDG_DATA_HOME=$tmp/xdg/data XDG_CONFIG_HOME=$tmp/xdg/config XDG_RUNTIME_DIR=$tmp/xdg/run
mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
kib_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ROWS=()
row() { # label peak-KiB seconds note
  local s; s=$(awk -v t="$3" 'BEGIN { if (t == "-") print "-"; else printf "%.2f", t }')
  ROWS+=("$(printf '%-34s %9s MB %8s s   %s' "$1" "$(kib_mb "$2")" "$s" "$4")")
  printf '%-34s %9s MB %8s s   %s\n' "$1" "$(kib_mb "$2")" "$s" "$4" >&2
}
FAILS=0
check() { # label peak-KiB
  [ "$2" -lt $((TARGET_MB * 1024)) ] || { FAILS=$((FAILS + 1)); echo "  over target: $1" >&2; }
}

# --- fixtures ------------------------------------------------------------------
ROOT=$tmp/local
mkdir -p "$ROOT/taskserv/bigdir/1.0.0" "$ROOT/taskserv/bigtar" "$tmp/tarsrc/bigtar"
manifest() { printf 'extension:\n  name: %s\n  version: 1.0.0\n  type: taskserv\n  description: rss bench\n' "$1"; }
manifest bigdir > "$ROOT/taskserv/bigdir/1.0.0/extension.yaml"
head -c "${MB}M" /dev/urandom > "$ROOT/taskserv/bigdir/1.0.0/payload.bin"
manifest bigtar > "$tmp/tarsrc/bigtar/extension.yaml"
cp "$ROOT/taskserv/bigdir/1.0.0/payload.bin" "$tmp/tarsrc/bigtar/payload.bin"
tar -C "$tmp/tarsrc/bigtar" -cf - extension.yaml payload.bin | gzip -1 > "$ROOT/taskserv/bigtar/bigtar-1.0.0.tar.gz"
rm -rf "$tmp/tarsrc"
TARBALL=$ROOT/taskserv/bigtar/bigtar-1.0.0.tar.gz
TAR_SHA=$(sha256sum "$TARBALL" | cut -d' ' -f1)
TAR_SIZE=$(stat -c %s "$TARBALL")
echo "fixtures: a ${MB} MB folder and a $((TAR_SIZE / 1048576)) MB tarball" >&2

# --- the registry and nginx ------------------------------------------------------
start_registry
mkdir -p "$tmp/www"; ln "$TARBALL" "$tmp/www/big.tar.gz" 2>/dev/null || cp "$TARBALL" "$tmp/www/big.tar.gz"
chmod 644 "$tmp/www/big.tar.gz"   # nginx workers run as www-data
start_nginx "$tmp/www" 64 "sendfile on;"

# --- the daemon ------------------------------------------------------------------------
daemon_config() { # backend-section
  cat > "$tmp/extregd.toml" <<TOML
[server]
port = 0
workers = 1
$1
[cache]
artifact_dir = "$tmp/artifacts"
ttl_seconds = 3600
TOML
}
# GET url; the bytes must hash to $2 when given, else to the answer's ETag
# (the digest the daemon verified). Prints "seconds cache-header sha256".
get() {
  local t; t=$(curl -sf -D "$tmp/h" -o "$tmp/dl.bin" -w '%{time_total}' "$1")
  local got; got=$(sha256sum "$tmp/dl.bin" | cut -d' ' -f1); rm -f "$tmp/dl.bin"
  local etag; etag=$(tr -d '\r' < "$tmp/h" | awk 'tolower($1)=="etag:" {print $2}' | tr -d '"')
  local want=${2:-${etag#sha256:}}
  [ -n "$want" ] && [ "$got" = "$want" ] || { echo "$1 served other bytes ($got, want '$want')" >&2; exit 1; }
  echo "$t $(tr -d '\r' < "$tmp/h" | awk 'tolower($1)=="x-extregd-cache:" {print $2}') $got"
}

# cold local, tarball
rm -rf "$tmp/artifacts"; daemon_config "[local]
path = \"$ROOT\""
start_daemon; IDLE=$(hwm "$DPID")
read -r secs cache _ < <(get "$API/extensions/taskserv/bigtar/1.0.0" "$TAR_SHA")
[ "$cache" = miss ] || { echo "the cold tarball download was a $cache" >&2; exit 1; }
p=$(hwm "$DPID"); row "cold local, tarball" "$p" "$secs" "idle $(kib_mb "$IDLE") MB"; check "cold local, tarball" "$p"
stop_daemon

# cold local, folder (packed through a temp file)
rm -rf "$tmp/artifacts"; start_daemon
read -r secs cache PACKED < <(get "$API/extensions/taskserv/bigdir/1.0.0")
[ "$cache" = miss ] || { echo "the cold folder download was a $cache" >&2; exit 1; }
p=$(hwm "$DPID"); row "cold local, folder (packed)" "$p" "$secs" ""; check "cold local, folder (packed)" "$p"
stop_daemon

# publish the folder (no daemon)
/usr/bin/time -f '%M %e' -o "$tmp/time" "$BIN" publish "$ROOT/taskserv/bigdir/1.0.0" --version 1.0.0 \
  --registry "127.0.0.1:$RPORT" --namespace bench > /dev/null 2> "$tmp/publish.err" \
  || { cat "$tmp/publish.err" >&2; exit 1; }
read -r p secs < "$tmp/time"; row "publish (extregd publish)" "$p" "$secs" "pack + streamed push"; check "publish" "$p"

# cold OCI, then cached hits
rm -rf "$tmp/artifacts"; daemon_config "[oci]
registry = \"127.0.0.1:$RPORT\"
namespace = \"bench\"
timeout_seconds = 60"
start_daemon
read -r secs cache PUSHED < <(get "$API/extensions/taskserv/bigdir/1.0.0")
[ "$cache" = miss ] || { echo "the cold OCI download was a $cache" >&2; exit 1; }
[ "$PUSHED" = "$PACKED" ] && same="same bytes as the local pack" || same="differs from the local pack"
p=$(hwm "$DPID"); row "cold OCI" "$p" "$secs" "registry -> cache -> client; $same"; check "cold OCI" "$p"
stop_daemon; start_daemon
read -r secs cache _ < <(get "$API/extensions/taskserv/bigdir/1.0.0" "$PUSHED")
[ "$cache" = hit ] || { echo "the download after a restart was a $cache" >&2; exit 1; }
p=$(hwm "$DPID"); row "first cached hit (hashed)" "$p" "$secs" "after a restart"; check "first cached hit" "$p"
tot=0
for _ in 1 2 3 4 5; do
  read -r secs cache _ < <(get "$API/extensions/taskserv/bigdir/1.0.0" "$PUSHED")
  [ "$cache" = hit ] || { echo "a repeated download was a $cache" >&2; exit 1; }
done
p=$(hwm "$DPID"); row "repeated cached hits (x5)" "$p" "$secs" "peak over the first hit and 5 more; time of the last"; check "repeated cached hits" "$p"
stop_daemon

# references
/usr/bin/time -f '%M %e' -o "$tmp/time" curl -sf -o /dev/null "http://127.0.0.1:$NPORT/big.tar.gz"
read -r p secs < "$tmp/time"; row "reference: curl GET from nginx" "$p" "$secs" "the client's RSS"
NW=$(pgrep -P "$(cat "$tmp/nginx.pid")" | head -1)
row "reference: nginx worker" "$(hwm "$NW")" "-" "after serving it (sendfile)"
loc=$(curl -fsi -X POST "http://127.0.0.1:$RPORT/v2/bench/ref/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
case $loc in http*) ;; *) loc=http://127.0.0.1:$RPORT$loc ;; esac
/usr/bin/time -f '%M %e' -o "$tmp/time" curl -fs -T "$TARBALL" -H 'Content-Type: application/octet-stream' "$loc&digest=sha256:$TAR_SHA" > /dev/null
read -r p secs < "$tmp/time"; row "reference: curl -T to the registry" "$p" "$secs" "upload of the tarball"

printf '\nPeak RSS per transfer path, %s MB artifact (target < %s MB each)\n' "$MB" "$TARGET_MB"
printf '%-34s %12s %10s   %s\n' path 'peak RSS' time note
printf '%s\n' "${ROWS[@]}"
if [ "$FAILS" -eq 0 ]; then echo "every extregd path under $TARGET_MB MB"; else echo "$FAILS path(s) at or over $TARGET_MB MB"; fi
