#!/usr/bin/env bash
# Builds the real Dockerfile with podman where no Docker engine runs (npm run image:build), for the image
# tests (test/container/image.test.ts). Writes .image-test.json: {"status":"built","image":…,"size":…},
# {"status":"skipped","reason":…} only where podman cannot be installed, or {"status":"failed","log":…}.
#
# Where no image registry is reachable, the base image node:20-slim is made here: Debian bookworm
# (debootstrap --variant=minbase), this machine's Node.js 20 in /usr/local with its npm and headers,
# user node (uid 1000). The host's CA bundle and npm settings are mounted into the build's RUN steps
# only (a proxy with its own certificate authority), never copied into the image.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPORT=.image-test.json
IMAGE=${CDC_SYNC_IMAGE:-localhost/cdc-sync:test}
BASE=docker.io/library/node:20-slim
LOG=$(mktemp -t cdc-sync-image.XXXXXX.log)
report() { node -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(JSON.parse(process.argv[2])) + "\n")' "$REPORT" "$1"; }
fail() {
  echo "image build failed: $1 (log: $LOG)" >&2
  tail -40 "$LOG" >&2
  report "$(node -e 'console.log(JSON.stringify({ status: "failed", reason: process.argv[1], log: require("fs").readFileSync(process.argv[2], "utf8").slice(-4000) }))' "$1" "$LOG")"
  exit 1
}
started=$(date +%s)

if ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing podman, runc and debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y podman runc debootstrap >>"$LOG" 2>&1 \
      || { apt-get update >>"$LOG" 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y podman runc debootstrap >>"$LOG" 2>&1; }
  fi
fi
if ! command -v podman >/dev/null 2>&1; then
  reason="podman is not installed and cannot be installed here (not root, or no apt-get)"
  echo "image tests skipped: $reason" >&2
  report "{\"status\":\"skipped\",\"reason\":\"$reason\"}"
  exit 0
fi

# runc (crun refuses mixed cgroup trees); limits this VM does not let a container raise.
export CONTAINERS_CONF=$PWD/tools/containers.conf

if ! podman image exists "$BASE"; then
  echo "making the base image $BASE (debootstrap, this machine's Node.js $(node --version))" >&2
  root=$(mktemp -d -t cdc-sync-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >>"$LOG" 2>&1 || fail "debootstrap"
  node_bin=$(command -v node)
  npm_dir=$(npm root -g)/npm
  headers=$(node -p 'require("path").join(process.execPath, "../../include/node")')
  mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules" "$root/usr/local/include"
  cp "$node_bin" "$root/usr/local/bin/node"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  [ -d "$headers" ] && cp -a "$headers" "$root/usr/local/include/node"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chroot "$root" groupadd --gid 1000 node >>"$LOG" 2>&1 || fail "groupadd"
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node >>"$LOG" 2>&1 || fail "useradd"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
  tar -C "$root" -c . | podman import --change 'CMD ["node"]' --change 'ENV NODE_VERSION='"$(node -p process.versions.node)" - "$BASE" >>"$LOG" 2>&1 || fail "podman import"
  rm -rf "$root"
fi

ca=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
npmrc=$(mktemp -t cdc-sync-npmrc.XXXXXX)
printf 'cafile=/run/host-ca.crt\nfund=false\naudit=false\nupdate-notifier=false\n' > "$npmrc"
mounts=()
[ -f "$ca" ] && mounts+=(-v "$ca:/run/host-ca.crt:ro" -v "$npmrc:/usr/local/etc/npmrc:ro")
echo "building $IMAGE from the Dockerfile" >&2
podman build --pull=never --format docker "${mounts[@]}" -t "$IMAGE" . >>"$LOG" 2>&1 || fail "podman build"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
seconds=$(( $(date +%s) - started ))
echo "built $IMAGE: $((size / 1048576)) MiB in ${seconds} s" >&2
report "{\"status\":\"built\",\"image\":\"$IMAGE\",\"size\":$size,\"seconds\":$seconds}"
