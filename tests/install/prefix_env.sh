#!/bin/sh
# prefix_env.sh PREFIX: prints the exports that let a stock lua5.4 load mile installed
# under PREFIX (Lua's layout: share/lua/5.4 and lib/lua/5.4; a prefix lua5.4 searches
# by default, such as /usr/local, needs none).
p=$1
echo "export LUA_PATH_5_4='$p/share/lua/5.4/?.lua;$p/share/lua/5.4/?/init.lua;;'"
echo "export LUA_CPATH_5_4='$p/lib/lua/5.4/?.so;;'"
