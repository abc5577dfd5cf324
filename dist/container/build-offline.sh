#!/usr/bin/env bash
# Builds the extregd image FROM scratch without network, with Debian's
# buildah: the given extregd binary (stripped), the glibc libraries `ldd`
# lists, the host's CA bundle, and the same runtime layout, environment,
# user and healthcheck as dist/container/Dockerfile.
#
#   dist/container/build-offline.sh BINARY TAG [STORAGE_ROOT RUN_ROOT]
#
# With STORAGE_ROOT/RUN_ROOT, buildah keeps its images there (vfs driver,
# no overlay module or fuse needed); otherwise in buildah's defaults.
set -euo pipefail
bin=${1:?usage: build-offline.sh BINARY TAG [STORAGE_ROOT RUN_ROOT]}
tag=${2:?usage: build-offline.sh BINARY TAG [STORAGE_ROOT RUN_ROOT]}
opts=(--storage-driver vfs)
if [ $# -ge 4 ]; then opts+=(--root "$3" --runroot "$4"); fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs" "$rootfs.tar"' EXIT
install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/provisioning"
install -d -m 1777 "$rootfs/tmp"
install -d -m 0700 "$rootfs/var/cache/extregd" "$rootfs/var/lib/extregd" "$rootfs/run/extregd" "$rootfs/home/nonroot"
strip -o "$rootfs/usr/local/bin/extregd" "$bin"
chmod 0755 "$rootfs/usr/local/bin/extregd"
# The shared libraries the binary needs, at the paths ldd resolved.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
chown -R 65532:65532 "$rootfs/var/cache/extregd" "$rootfs/var/lib/extregd" "$rootfs/run/extregd" "$rootfs/home/nonroot"

ctr=$(buildah "${opts[@]}" from scratch)
# As a tar archive: ADD keeps the owners (copy would make them root).
tar -C "$rootfs" --numeric-owner -cf "$rootfs.tar" .
buildah "${opts[@]}" add "$ctr" "$rootfs.tar" / >/dev/null
rm -f "$rootfs.tar"
buildah "${opts[@]}" config \
  --env EXTREGD_HOST=0.0.0.0 --env EXTREGD_PORT=8082 --env EXTREGD_LOG=info \
  --env HOME=/home/nonroot --env XDG_CONFIG_HOME=/etc \
  --env XDG_DATA_HOME=/var/lib/extregd --env XDG_CACHE_HOME=/var/cache/extregd \
  --env XDG_RUNTIME_DIR=/run/extregd \
  --volume /var/cache/extregd --volume /var/lib/extregd --volume /run/extregd \
  --user 65532:65532 --port 8082 \
  --healthcheck 'CMD /usr/local/bin/extregd healthcheck' \
  --healthcheck-interval 10s --healthcheck-timeout 3s --healthcheck-start-period 5s --healthcheck-retries 3 \
  --entrypoint '["/usr/local/bin/extregd"]' --cmd '[]' \
  --label org.opencontainers.image.title=extregd \
  "$ctr"
buildah "${opts[@]}" commit --format docker --rm "$ctr" "$tag" >/dev/null
buildah "${opts[@]}" inspect --type image --format '{{.FromImageID}}' "$tag"
