#!/usr/bin/env bash
# Benchmark: peak RSS of `extregd publish` (pack + streamed push, no daemon)
# of a 200 MB extension to the real docker-registry, next to `curl -T` of a
# file of the same size to an upload session of the same registry, and a
# 20 MB publish (peak RSS must not grow with the artifact).
#
#   bench/publish_rss.sh [megabytes]        (default 200)
#   EXTREGD_BIN=target/debug/extregd bench/publish_rss.sh   (skip the release build)
#
# Not a test: figures vary; compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-200}
command -v docker-registry >/dev/null || { echo "apt-get install docker-registry" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "apt-get install time" >&2; exit 1; }
if [ -z "${EXTREGD_BIN:-}" ]; then
  cargo build --release -q -p extregd --bin extregd
  EXTREGD_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/extregd
fi
. bench/lib.sh
start_registry
port=$RPORT

mkext() { # dir name megabytes
  mkdir -p "$1"
  printf 'extension:\n  name: %s\n  version: 1.0.0\n  type: taskserv\n  description: bench\n' "$2" >"$1/extension.yaml"
  head -c "$(( $3 * 1024 * 1024 ))" /dev/urandom >"$1/payload.bin"
}
rss() { # label command...  -> prints peak RSS in KiB
  local label=$1; shift
  /usr/bin/time -f '%M %e' -o "$tmp/time" "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  read -r kib secs <"$tmp/time"
  printf '%-40s peak RSS %7d KiB  (%5.1f s)\n' "$label" "$kib" "$secs" >&2
  echo "$kib"
}
mkext "$tmp/big" big "$MB"
mkext "$tmp/small" small $(( MB / 10 ))
small=$(rss "extregd publish ($(( MB / 10 )) MB)" "$EXTREGD_BIN" publish "$tmp/small" --version 1.0.0 --registry "127.0.0.1:$port" --namespace bench)
big=$(rss "extregd publish ($MB MB)" "$EXTREGD_BIN" publish "$tmp/big" --version 1.0.0 --registry "127.0.0.1:$port" --namespace bench)
# Reference: curl streaming a file of the same size into an upload session.
head -c "$(( MB * 1024 * 1024 ))" /dev/urandom >"$tmp/ref.bin"
digest=sha256:$(sha256sum "$tmp/ref.bin" | cut -d' ' -f1)
loc=$(curl -fsi -X POST "http://127.0.0.1:$port/v2/bench/ref/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
ref=$(rss "curl -T ($MB MB, reference)" curl -fs -T "$tmp/ref.bin" -H 'Content-Type: application/octet-stream' "$loc&digest=$digest")
awk -v b="$big" -v s="$small" -v r="$ref" 'BEGIN { printf "publish %d MB / publish %d MB: %.2fx   publish / curl -T: %.2fx\n", '"$MB"', '"$(( MB / 10 ))"', b/s, b/r }'
