#!/bin/sh
# kernel_name.sh SOURCE BUILD PREFIX OUT: scripts/register_kernel.sh (make kernelspec,
# make install) registers a kernel under the name given, again for the same program,
# and refuses to replace a kernel of that name that runs another mile.
set -eu
src=$1 build=$2 p=$3 out=$4
command -v jupyter >/dev/null 2>&1 || { echo "jupyter not found: skipped"; exit 0; }
rm -rf "$out"
export JUPYTER_DATA_DIR="$out/data"
reg="$src/scripts/register_kernel.sh"
"$reg" mile-test "$build/share/jupyter/kernels/mile" >/dev/null
grep -q "\"$build/mile\"" "$out/data/kernels/mile-test/kernel.json"
"$reg" mile-test "$build/share/jupyter/kernels/mile" >/dev/null # the same program: replaced
if "$reg" mile-test "$p/share/jupyter/kernels/mile" 2>"$out/err"; then
  echo "FAIL: another mile's kernel was replaced"; exit 1
fi
grep -q "KERNEL_NAME=" "$out/err" || { echo "FAIL: no hint"; cat "$out/err"; exit 1; }
grep -q "\"$build/mile\"" "$out/data/kernels/mile-test/kernel.json"
"$reg" mile-installed "$p/share/jupyter/kernels/mile" >/dev/null
grep -q "\"$p/bin/mile\"" "$out/data/kernels/mile-installed/kernel.json"
echo "ok: kernels registered by name, another mile's kernel kept"
