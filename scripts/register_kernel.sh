#!/bin/sh
# register_kernel.sh NAME SPEC_DIR: register the kernelspec in SPEC_DIR (its kernel.json)
# for the current user under NAME (`make kernelspec`, `make install`). A kernel of that
# name registered by another mile (another checkout or build: another argv[0]) is not
# replaced: the script stops and says how to choose another name (KERNEL_NAME=...).
set -eu
name=$1 spec=$2
command -v jupyter >/dev/null 2>&1 || {
  echo "jupyter not found (apt-get install jupyter-core jupyter-client): kernel $name not registered" >&2
  exit 1
}
case $name in
  *[!a-z0-9._-]* | "") echo "kernel name '$name': use lower-case letters, digits, '.', '_', '-'" >&2; exit 1 ;;
esac
program=$(sed -n 's/.*"argv": \["\([^"]*\)".*/\1/p' "$spec/kernel.json")
existing=$(jupyter --data-dir)/kernels/$name/kernel.json
if [ -f "$existing" ]; then
  other=$(sed -n 's/.*"argv": \["\([^"]*\)".*/\1/p' "$existing")
  if [ "$other" != "$program" ]; then
    echo "a kernel named '$name' is registered already, for $other ($existing);" >&2
    echo "not replacing it: choose another name, e.g. make kernelspec KERNEL_NAME=$name-2" >&2
    exit 1
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/$name"
# the display name tells kernels of several builds apart in Jupyter's menu
sed "s|\"display_name\": \"mile (Lua 5.4)\"|\"display_name\": \"mile (Lua 5.4) $name\"|" "$spec/kernel.json" >"$tmp/$name/kernel.json"
jupyter kernelspec install --user --replace --name "$name" "$tmp/$name"
echo "kernel '$name' runs $program"
