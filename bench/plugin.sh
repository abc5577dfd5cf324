#!/usr/bin/env bash
# Benchmark: the cost of the Nushell plugin path.
#
#   bench/plugin.sh [calls]       (default 200)
#
# Prints (1) the round trip of `ext search` inside one running nu with the
# plugin warm (mean over N calls, measured with nu's own `timeit`), and
# (2) whole processes: `nu -n --plugins nu_plugin_ext -c 'ext search kubernetes'`
# next to `nu -n -c 'ls'`, timed by hyperfine in the same run.
# The daemon (release build) serves examples/catalog with warm caches.
#   BENCH_NO_BUILD=1 CARGO_TARGET_DIR=... bench/plugin.sh   (use binaries built before)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
command -v hyperfine >/dev/null || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq hyperfine >/dev/null; }
NU=tests/.tools/nu/node_modules/@nushell/linux-x64/bin/nu
[ -x "$NU" ] || npm install --prefix tests/.tools/nu --no-audit --no-fund --loglevel=error nushell@0.115.1 >/dev/null
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release -q -p extregd -p nu_plugin_ext
PLUGIN=$TARGET/release/nu_plugin_ext

tmp=$(mktemp -d)
trap 'kill $DPID 2>/dev/null; rm -rf "$tmp"' EXIT
export XDG_RUNTIME_DIR=$tmp/run XDG_CONFIG_HOME=$tmp/config XDG_CACHE_HOME=$tmp/cache XDG_DATA_HOME=$tmp/data HOME=$tmp
mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
EXTREGD_LOG=warn PROVISIONING_EXTENSIONS_PATH=$PWD/examples/catalog "$TARGET/release/extregd" --port 0 > "$tmp/out" 2> "$tmp/err" &
DPID=$!
for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/extregd/extregd.sock" ] && break; sleep 0.05; done

# (1) warm calls inside one nu process: first call starts the plugin, then N timed calls.
WARM=$("$NU" -n --plugins "$PLUGIN" -c "
  ext search kubernetes | ignore
  let t = (timeit { for i in 1..$N { ext search kubernetes | ignore } })
  let b = (timeit { for i in 1..$N { [1 2 3] | where \$it > 1 | ignore } })
  print ((\$t / $N | into int) / 1000000.0) ((\$b / $N | into int) / 1000000.0)
")
read -r WARM_MS LOOP_MS <<<"$(echo $WARM)"

# (2) whole processes.
hyperfine -N --warmup 5 --runs 40 --export-json "$tmp/h.json" \
  "$NU -n -c ls" \
  "$NU -n --plugins $PLUGIN -c 'ext search kubernetes'" >/dev/null
read -r LS_MS EXT_MS < <(python3 -c "
import json; r = json.load(open('$tmp/h.json'))['results']
print(r[0]['mean']*1000, r[1]['mean']*1000)")

printf '\n`ext search kubernetes`, %s warm calls in one nu (plugin and daemon caches warm):\n' "$N"
printf '  per call: %.3f ms  (a pipeline of built-ins, same loop: %.3f ms)  target: < 5 ms\n' "$WARM_MS" "$LOOP_MS"
printf '\nwhole process (hyperfine, 40 runs):\n'
printf '  nu -n -c ls                         %7.1f ms\n' "$LS_MS"
printf '  nu -n --plugins ... -c "ext search" %7.1f ms  (%.1f ms more: plugin start + hello + request)\n' "$EXT_MS" "$(python3 -c "print($EXT_MS-$LS_MS)")"
