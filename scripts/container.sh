#!/usr/bin/env bash
# Build the app's image with podman, without a Docker engine or Docker Hub.
#
#   scripts/container.sh base    make python:3.11.14-slim-bookworm here, unless present
#   scripts/container.sh build   the base, then the image (BNVIZ_IMAGE, default bnviz:latest)
#   scripts/container.sh run     build, then serve it on http://localhost:8501
#
# The base is a local stand-in for the official image (Docker Hub is out of reach): Debian
# bookworm from debootstrap with Debian's python3.11, laid out like the official slim image
# (python and pip in /usr/local/bin, packages in /usr/local/lib/python3.11/site-packages).
# Its root filesystem is kept as a tarball under BNVIZ_CONTAINER_CACHE
# (~/.cache/bnviz-container), keyed by this recipe, so a later machine only re-imports it.
#
# The image build trusts the host's certificate authorities (BNVIZ_CA_BUNDLE is mounted over
# the system's and pip's bundles while it runs, not baked in), reaches PyPI and Debian through
# the host's network, and takes the CPU torch wheel from a local find-links folder
# (BNVIZ_TORCH_WHEELS, default /opt/wheels) when one holds it, else from the Dockerfile's
# default, the PyTorch CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"  # debootstrap and chroot, for a root without sbin in PATH

BASE=python:3.11.14-slim-bookworm
IMAGE=${BNVIZ_IMAGE:-bnviz:latest}
CACHE=${BNVIZ_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bnviz-container}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
TORCH_WHEELS=${BNVIZ_TORCH_WHEELS:-/opt/wheels}
CA_BUNDLE=${BNVIZ_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# Debian's runc (scripts/test.sh installs it with podman), and explicit limits: podman's
# defaults for root exceed the hard limits of machines without CAP_SYS_RESOURCE, such as CI's,
# and the container would not start ("error setting rlimit").
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

log() { printf '[container] %s\n' "$*" >&2; }

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  log "$label took $((SECONDS - start)) s"
}

# The base's root filesystem, as the official slim image lays it out. Run as root.
make_rootfs() {
  local root=$1
  debootstrap --variant=minbase --include=ca-certificates,netbase,tzdata \
    bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; return 1; }
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The official images' apt and dpkg settings: no package caches or indexes left in layers,
  # and, being slim, no docs, man pages or translations (copyright files kept).
  local conf="$root/etc/apt/apt.conf.d" clean
  clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
  clean+=' /var/cache/apt/*.bin || true'
  {
    echo "DPkg::Post-Invoke { \"$clean\"; };"
    echo "APT::Update::Post-Invoke { \"$clean\"; };"
    echo 'Dir::Cache::pkgcache "";'
    echo 'Dir::Cache::srcpkgcache "";'
  } >"$conf/docker-clean"
  echo 'Acquire::Languages "none";' >"$conf/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$conf/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$conf/docker-autoremove-suggests"
  local excluded=(/usr/share/doc /usr/share/groff /usr/share/info /usr/share/linda
    /usr/share/lintian/overrides /usr/share/locale /usr/share/man) dir
  {
    for dir in "${excluded[@]}"; do echo "path-exclude $dir/*"; done
    echo 'path-include /usr/share/doc/*/copyright'
  } >"$root/etc/dpkg/dpkg.cfg.d/docker"
  mount -t proc proc "$root/proc"
  # A venv at /usr/local gives the official layout on Debian's interpreter, with its own
  # site-packages (Debian's python refuses system-wide pip installs, PEP 668).
  chroot "$root" /bin/sh -ec '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get dist-upgrade -y -qq
    apt-get install -y -qq --no-install-recommends python3.11-venv
    python3.11 -m venv /usr/local
    rm /usr/local/bin/activate* /usr/local/bin/Activate.ps1
    apt-get clean
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
  ' >>"$root.log" 2>&1 || { umount "$root/proc"; tail -n 30 "$root.log" >&2; return 1; }
  umount "$root/proc"
  for dir in "${excluded[@]}"; do
    [ -d "$root$dir" ] || continue
    find "$root$dir" ! -type d ! -path '*/doc/*/copyright' -delete
    find "$root$dir" -mindepth 1 -depth -type d -empty -delete
  done
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  rm -rf "${root:?}/dev/"* "${root:?}/tmp/"* "${root:?}/var/tmp/"*
}

# Makes the base unless an image of that name is present: one made by an older recipe here is
# made again; any other (the official one, pulled) is used as it is.
base() {
  local key tarball made
  key=$(declare -f make_rootfs | cat - <(echo "$MIRROR $SECURITY_MIRROR") | sha1sum | cut -c1-12)
  if "${PODMAN[@]}" image exists "$BASE"; then
    made=$("${PODMAN[@]}" image inspect --format '{{index .Labels "bnviz.base-recipe"}}' "$BASE")
    if [ -z "$made" ] || [ "$made" = "$key" ]; then
      log "base image $BASE is present"
      return
    fi
    log "base image $BASE is from an older recipe ($made): making it again"
  fi
  command -v debootstrap >/dev/null || { log "debootstrap is not installed"; return 1; }
  [ "$(id -u)" -eq 0 ] || { log "making the base image needs root (debootstrap)"; return 1; }
  tarball="$CACHE/base-bookworm-python3.11-$key.tar"
  mkdir -p "$CACHE"
  if [ -f "$tarball" ]; then
    log "base root filesystem from the cache: $tarball"
  else
    ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'mountpoint -q "$ROOTFS/proc" && umount "$ROOTFS/proc"; rm -rf "$ROOTFS"{,.log}' EXIT
    timed "debootstrap of the base" make_rootfs "$ROOTFS"
    tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$ROOTFS" "$ROOTFS.log"
    trap - EXIT
    find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "${tarball##*/}" -delete
  fi
  # An honest label: Debian's 3.11, named for the official tag the Dockerfile asks for.
  local python_version
  python_version=$(tar -xOf "$tarball" ./var/lib/dpkg/status \
    | awk '/^Package: python3.11-minimal$/{p=1} p&&/^Version:/&&!v{v=$2} END{print v}')
  timed "import of the base" "${PODMAN[@]}" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL bnviz.base-recipe=$key" \
    --change "LABEL org.opencontainers.image.description=\"local stand-in for $BASE: Debian bookworm (debootstrap), Debian's python3.11 $python_version in a venv at /usr/local\"" \
    --message "debootstrap bookworm + python3.11 $python_version" \
    "$tarball" "$BASE" >/dev/null
}

# Where pip looks for its certificate authorities in the base: its vendored certifi bundle.
pip_ca_path() {
  "${PODMAN[@]}" run --rm "${LIMITS[@]}" --network none --entrypoint python "$BASE" \
    -c 'from pip._vendor import certifi; print(certifi.where())'
}

build() {
  timed "base image" base
  # Mounts over paths the base already has, so no empty mount point is left in a layer.
  local args=(
    --pull=never --format docker --network host "${LIMITS[@]}"
    -v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro"
    -v "$CA_BUNDLE:$(pip_ca_path):ro"
  )
  if compgen -G "$TORCH_WHEELS/torch-*+cpu-*.whl" >/dev/null; then
    args+=(-v "$TORCH_WHEELS:/mnt:ro" --build-arg "TORCH_SOURCE=--find-links /mnt")
    log "torch from $TORCH_WHEELS"
  fi
  local before after
  before=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  timed "image build" "${PODMAN[@]}" build "${args[@]}" -t "$IMAGE" .
  after=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")
  # The image this tag named before, now untagged: dropped, its cached layers kept.
  if [ -n "$before" ] && [ "$before" != "$after" ]; then
    "${PODMAN[@]}" rmi "$before" >/dev/null 2>&1 || true
  fi
  log "image $IMAGE: $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes"
}

run() {
  build
  exec "${PODMAN[@]}" run --rm "${LIMITS[@]}" -p "${BNVIZ_PORT:-8501}:8501" "$IMAGE"
}

case "${1:-}" in
  base | build | run) "$1" ;;
  *)
    echo "usage: $0 base|build|run" >&2
    exit 2
    ;;
esac
