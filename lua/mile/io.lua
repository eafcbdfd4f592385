--- mile.io: tensors in safetensors files, and JSON.
--
-- Files are in Hugging Face's safetensors format (see docs/io.md): PyTorch and NumPy
-- read them with `safetensors.torch.load_file` / `safetensors.numpy.load_file`, and
-- mile reads theirs (F32 and F64; F16 and BF16 become float32).
--
-- Error convention, as Lua's io library: a failure of the file system (no such file,
-- permission denied, disk full) returns `nil, message`; misuse (a non-tensor value,
-- a non-string metadata value) and a malformed file raise an error. Every message
-- names the function and the file:
--   local t, meta = assert(mile.io.load_safetensors("run/ckpt.safetensors"))
local core = require "mile.io.core"
require "mile.tensor" -- the tensor metatable the core module checks against

local M = {}

--- JSON null as returned by json_decode (and accepted by json_encode).
M.null = core.null

--- Write tensors to `path` in the safetensors format, atomically (temporary file
-- in the same directory, fsync, rename: an existing file is replaced whole or not
-- at all).
-- tensors: {name = tensor, ...}; names are non-empty strings, tensors float32 or
-- float64 of any shape (views are written as their elements, row-major). They are
-- written sorted by name, metadata sorted by key, so the same tables give the same
-- bytes. metadata (optional): {key = value, ...}, both strings, stored in the
-- header's "__metadata__".
-- Returns true, or nil, message when the file cannot be written.
M.save_safetensors = core.save

--- Read a safetensors file: load_safetensors(path [, {max_bytes = n}]).
-- Returns tensors {name = tensor}, metadata {key = string} (empty when the file has
-- none), names (the tensor names in the order of their data in the file) and
-- file_dtypes {name = "F32"|"F64"|"F16"|"BF16"}; or nil, message when the file
-- cannot be opened or read. A malformed file raises an error naming the file and
-- the problem. Every size in the header is checked against the file's real size
-- before anything is allocated; max_bytes (and tensor.alloc_budget, when set) also
-- bounds the bytes the tensors take in memory: a file that needs more raises before
-- its first tensor is allocated.
M.load_safetensors = core.load

--- Encode a plain Lua value as compact JSON (object keys sorted, so the same table
-- gives the same string). Tables are arrays when their keys are exactly 1..n (n > 0)
-- and objects when all keys are strings; an empty table is {}. Integers stay
-- integers (1), floats are written to round-trip (1.0, 0.1). Raises on functions,
-- userdata, inf/nan, mixed or sparse keys, non-UTF-8 strings and cycles.
M.json_encode = core.json_encode

--- Decode JSON text. Objects and arrays become tables, integers Lua integers, other
-- numbers floats, null becomes mile.io.null. Raises with line and column on bad JSON.
M.json_decode = core.json_decode

return M
