#!/usr/bin/env bash
# Set up everything the tests need (first time only) and run every check: lint, unit, app,
# browser, deployment and container tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
apt_install() {
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends "$@" >/dev/null; }
}
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
# The container test's tools: podman with Debian's runc, and debootstrap for the local base
# image. Where they cannot be installed the test skips and says why, so this is not fatal.
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}" || echo "test.sh: could not install ${need[*]}; the container test will skip" >&2
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
if [ -f Dockerfile ]; then .venv/bin/hadolint Dockerfile; fi
exec .venv/bin/python -m pytest "$@"
