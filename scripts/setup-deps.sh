#!/bin/sh
# Install the Debian packages mile needs, when they are missing. Idempotent.
# Not root: print the exact apt-get line and stop with status 1.
# slurm-wlm and munge: the single-node Slurm the `slurm` tests start (tests/slurm/).
# strace: its fault injection kills `mile train` at every write in tests/lua/test_kill.lua.
# libwebsockets-dev: the HTTP + WebSocket server of `mile teleop`; chromium, chromium-driver,
# python3-selenium: the headless browser that drives the teleop page in its tests (label browser).
# clang-14, libclang-rt-14-dev: the libFuzzer harnesses of tests/fuzz/ (make fuzz, make fuzz-smoke).
# libdnnl-dev: oneDNN, the float32 matrix products (core/src/gemm.c, docs/performance.md).
# luarocks: tests/install builds rockspecs/mile-scm-1.rockspec into a temporary tree.
set -eu

PACKAGES="build-essential cmake pkg-config lua5.4 liblua5.4-dev luajit libreadline-dev \
libopenblas-dev libdnnl-dev libcsv-dev libcmocka-dev libjansson-dev libbox2d-dev libmujoco-dev \
libpng-dev libosmesa6-dev gnuplot-nox \
libzmq3-dev libssl-dev jupyter-core jupyter-client python3-jupyter-client jupyter-nbconvert \
python3-nbconvert python3-nbformat \
slurm-wlm munge strace \
libwebsockets-dev chromium chromium-driver python3-selenium \
clang-14 libclang-rt-14-dev luarocks"

missing=""
for p in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
  echo "mile: missing Debian packages:$missing" >&2
  echo "mile: run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "mile: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
