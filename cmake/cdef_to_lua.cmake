# Wrap the preprocessed public headers in a Lua module (`require "mile.cdef"`)
# so LuaJIT's ffi.cdef can load them without knowing where the build put them.
file(READ ${INPUT} header)
file(WRITE ${OUTPUT} "-- Generated from core/include/mile/mile.h by cmake/cdef_to_lua.cmake. Do not edit.\nreturn [==[\n${header}]==]\n")
