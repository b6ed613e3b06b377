#!/usr/bin/env bash
# One-time setup for `mobile-sdk engine build --arch arm64` and the arm64 engine test (CI runs it
# before the tests; tests never download anything): the Debian cross toolchain and qemu user
# emulation, and the manylinux aarch64 executorch wheel unpacked into the cache that
# mobile_sdk/engine/build.py reads (ARM64_SYSROOT there).
#
#   mobile_sdk/engine/setup_arm64.sh [PYTHON]     (PYTHON: whose pip downloads; default the repo's .venv)
set -euo pipefail

ET_VERSION=1.5.1  # mobile_sdk/engine/build.py: ARM64_EXECUTORCH_VERSION
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${1:-$REPO/.venv/bin/python}
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/mobile-sdk/arm64/executorch-${ET_VERSION}"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update
$SUDO apt-get install -y g++-aarch64-linux-gnu qemu-user-static

if [ ! -f "$CACHE/executorch/share/cmake/executorch-config.cmake" ]; then
  mkdir -p "${CACHE%/*}"
  tmp=$(mktemp -d "${CACHE%/*}/.tmp.XXXXXX")
  "$PYTHON" -m pip download --only-binary=:all: --platform manylinux_2_28_aarch64 --python-version 3.11 \
      --no-deps "executorch==${ET_VERSION}" -d "$tmp/wheel"
  "$PYTHON" -m zipfile -e "$tmp"/wheel/executorch-*.whl "$tmp/unpacked"
  rm -rf "$CACHE"
  mv "$tmp/unpacked" "$CACHE"   # only a complete unpack gets the final name
  rm -rf "$tmp"
fi
echo "arm64 executorch wheel: $CACHE"
