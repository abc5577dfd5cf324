# Shared by the benchmarks (sourced after `cd` to the repository): a scratch
# folder `$tmp`, free ports, the real docker-registry, nginx as the
# reference server, and extregd started on "$tmp/extregd.toml". What each
# helper starts is recorded, and the EXIT trap stops it and removes `$tmp`.
tmp=$(mktemp -d)
DPID=""; RPID=""
bench_cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null
  rm -rf "$tmp"
}
trap bench_cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry [log-level] [access-log on|off]: docker-registry on a free
# port (RPORT, RPID) storing in $tmp/registry; its log is $tmp/registry.log.
start_registry() {
  RPORT=$(port)
  local disabled=true; [ "${2:-off}" = on ] && disabled=false
  cat > "$tmp/registry.yml" <<YML
version: 0.1
log:
  level: ${1:-error}
  accesslog:
    disabled: $disabled
storage:
  filesystem:
    rootdirectory: $tmp/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$RPORT
  secret: bench
catalog:
  maxentries: 100
YML
  docker-registry serve "$tmp/registry.yml" > "$tmp/registry.log" 2>&1 & RPID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$RPORT/v2/" >/dev/null && break; sleep 0.1; done
}

# start_nginx root worker-connections [http directives] [server directives]:
# one nginx worker on a free port (NPORT) serving `root`.
start_nginx() {
  NPORT=$(port)
  chmod 755 "$tmp" "$1"   # nginx workers run as www-data
  cat > "$tmp/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections $2; }
http {
  access_log off;
  ${3:-}
  server {
    listen 127.0.0.1:$NPORT;
    root $1;
    ${4:-}
  }
}
NGINX
  nginx -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/nginx.err"
}

# start_daemon: $BIN on $tmp/extregd.toml (DPID); API is its /api/v1 URL.
start_daemon() {
  : > "$tmp/extregd.out"
  EXTREGD_LOG=warn "$BIN" --config "$tmp/extregd.toml" > "$tmp/extregd.out" 2>> "$tmp/extregd.err" &
  DPID=$!
  for _ in $(seq 200); do grep -q listening "$tmp/extregd.out" 2>/dev/null && break; sleep 0.05; done
  API=$(sed -n 's/.*listening on //p' "$tmp/extregd.out")/api/v1
  [ "$API" != /api/v1 ] || { echo "extregd did not start:" >&2; cat "$tmp/extregd.err" >&2; exit 1; }
}
stop_daemon() { kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=""; }
# Peak RSS (VmHWM, KiB) of a process.
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
