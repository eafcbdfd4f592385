-- mile.io and mile.checkpoint from Lua: safetensors round trips, the byte layout
-- (checked with string.unpack, not with mile), files assembled by hand as another
-- implementation would write them, error messages, JSON, nn.save / nn.load.
local T = require "testing"
local tensor = require "mile.tensor"
local mio = require "mile.io"
local checkpoint = require "mile.checkpoint"

-- a fresh path in the temporary directory, removed at exit by the tests themselves
local function temp_path(suffix)
  local base = os.tmpname()
  os.remove(base)
  return base .. (suffix or ".safetensors")
end

local function read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- a safetensors file from a header text and raw data, assembled with string.pack
local function assemble(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

T.test("save_safetensors / load_safetensors round trip both dtypes, 0-d, empty and views", function()
  local path = temp_path()
  local a = tensor.from({ { 1.5, -2.25, 3 }, { 1e-30, -0.0, 65504 } })
  local b = tensor.from({ 0.1, math.pi, -1e300, 5e-324 }, "float64")
  local view = tensor.arange(0, 12, 1, "float64"):view(3, 4):t() -- non-contiguous
  local tensors = {
    ["layer.weight"] = a, b64 = b, s32 = tensor.scalar(7.5), s64 = tensor.scalar(-3, "float64"),
    empty = tensor.zeros { 0, 3 }, transposed = view,
  }
  T.eq(mio.save_safetensors(path, tensors, { note = "hello", unicode = "été ✓" }), true)
  local got, meta, names, dtypes = mio.load_safetensors(path)
  T.eq(names, { "b64", "empty", "layer.weight", "s32", "s64", "transposed" }) -- sorted on save
  T.eq(sorted_keys(got), names)
  for name, t in pairs(tensors) do
    T.eq(got[name]:shape(), t:shape(), name)
    T.eq(got[name]:dtype(), t:dtype(), name)
    T.eq(got[name]:totable(), t:totable(), name)
    T.truthy(got[name]:is_contiguous(), name)
  end
  T.eq(1 / got["layer.weight"][2][2], -math.huge) -- the sign of -0 survives
  T.eq(got.b64:totable()[4], 5e-324)                      -- a subnormal survives
  T.eq(got.s64:dim(), 0)
  T.eq(meta, { note = "hello", unicode = "été ✓" })
  T.eq(dtypes, { b64 = "F64", empty = "F32", ["layer.weight"] = "F32", s32 = "F32", s64 = "F64", transposed = "F64" })
  -- no metadata: an empty table back
  T.eq(mio.save_safetensors(path, { x = tensor.zeros { 2 } }), true)
  local _, meta2 = mio.load_safetensors(path)
  T.eq(meta2, {})
  os.remove(path)
end)

T.test("the same tensors give the same bytes, whatever the table order", function()
  local p1, p2 = temp_path(), temp_path()
  local w, v = tensor.from { 1, 2 }, tensor.from({ 3 }, "float64")
  local t1, t2 = {}, {}
  t1.w, t1.v, t1.z = w, v, tensor.zeros { 1 }
  t2.z, t2.v, t2.w = tensor.zeros { 1 }, v, w
  local m1, m2 = {}, {}
  for i = 1, 20 do m1["k" .. i] = tostring(i) end
  for i = 20, 1, -1 do m2["k" .. i] = tostring(i) end
  assert(mio.save_safetensors(p1, t1, m1))
  assert(mio.save_safetensors(p2, t2, m2))
  T.eq(read_bytes(p1), read_bytes(p2))
  os.remove(p1)
  os.remove(p2)
end)

T.test("the byte layout follows the published format", function()
  local path = temp_path()
  assert(mio.save_safetensors(path, { b = tensor.from({ 0.5, -1 }, "float64"), a = tensor.from { { 1, 2, 3 } } },
    { k = "v" }))
  local bytes = read_bytes(path)
  local n = string.unpack("<I8", bytes)
  T.eq((8 + n) % 8, 0, "data starts 8-byte aligned")
  local header = bytes:sub(9, 8 + n)
  local json = '{"__metadata__":{"k":"v"},'
    .. '"a":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]},'
    .. '"b":{"dtype":"F64","shape":[2],"data_offsets":[12,28]}}'
  T.eq(header:sub(1, #json), json)
  T.eq(header:sub(#json + 1), string.rep(" ", n - #json), "padding is spaces")
  T.eq(bytes:sub(9 + n), string.pack("<fff", 1, 2, 3) .. string.pack("<dd", 0.5, -1))
  os.remove(path)
end)

T.test("a file assembled by hand (as PyTorch's safetensors writes it) loads", function()
  local path = temp_path()
  -- keys in any order, offsets sorted, no padding, metadata last, F16 and BF16 data
  local header = '{"b":{"dtype":"F64","shape":[],"data_offsets":[8,16]},'
    .. '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
    .. '"h":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},'
    .. '"bf":{"dtype":"BF16","shape":[1,1],"data_offsets":[22,24]},'
    .. '"__metadata__":{"format":"pt"}}'
  local data = string.pack("<ff", -2.5, 0.25) .. string.pack("<d", 1e-300)
    .. string.pack("<I2I2I2", 0x3c00, 0xc000, 0x7c00) -- F16: 1, -2, inf
    .. string.pack("<I2", 0xc040)                     -- BF16: -3
  write_bytes(path, assemble(header, data))
  local t, meta, names, dtypes = mio.load_safetensors(path)
  T.eq(names, { "a", "b", "h", "bf" }) -- file order, by offset
  T.eq(t.a:totable(), { -2.5, 0.25 })
  T.eq(t.b:item(), 1e-300)
  T.eq(t.b:dtype(), "float64")
  T.eq(t.h:totable(), { 1, -2, math.huge })
  T.eq(t.h:dtype(), "float32")
  T.eq(t.bf:totable(), { { -3 } })
  T.eq(dtypes.h, "F16")
  T.eq(meta, { format = "pt" })
  os.remove(path)
end)

T.test("a missing or unreadable file returns nil and a message, like io.open", function()
  local path = temp_path()
  local t, msg = mio.load_safetensors(path)
  T.eq(t, nil)
  T.truthy(msg:find(path, 1, true), msg)
  T.truthy(msg:find("No such file"), msg)
  local dir = os.tmpname()
  os.remove(dir)
  local ok, err = mio.save_safetensors(dir .. "/missing/x.safetensors", { x = tensor.zeros { 1 } })
  T.eq(ok, nil)
  T.truthy(err:find("missing/x.safetensors", 1, true) and err:find("No such file"), err)
end)

T.test("malformed files raise errors naming the file and the problem", function()
  local path = temp_path()
  local function bad(bytes, pattern)
    write_bytes(path, bytes)
    local msg = T.raises(function() mio.load_safetensors(path) end, pattern)
    T.truthy(msg:find(path, 1, true), "the message names the file: " .. msg)
  end
  bad("abc", "too short")
  bad(string.pack("<I8", 1000) .. "{}", "larger than the rest of the file")
  bad(assemble('{"w": }'), "not valid JSON")
  bad(assemble("[1,2]"), "not start with '{'")
  bad(assemble('{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', string.rep("\0", 8)),
    "tensor 'w': unsupported dtype 'I64'")
  bad(assemble('{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', "\0\0\0\0"), "non%-negative")
  bad(assemble('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', "\0\0\0\0"), "out of range")
  bad(assemble('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
    .. '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', string.rep("\0", 12)), "overlap")
  bad(assemble('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', "\0\0\0\0\0"), "trailing bytes")
  -- every prefix of a valid file
  local good = temp_path()
  assert(mio.save_safetensors(good, { w = tensor.from { 1, 2, 3 } }, { k = "v" }))
  local bytes = read_bytes(good)
  for len = 0, #bytes - 1 do
    write_bytes(path, bytes:sub(1, len))
    T.raises(function() mio.load_safetensors(path) end, "load_safetensors")
  end
  os.remove(good)
  os.remove(path)
end)

T.test("misuse of save_safetensors raises, naming the file", function()
  local path = temp_path()
  T.raises(function() mio.save_safetensors(path, { w = 1 }) end, "'w' is a number, not a tensor")
  T.raises(function() mio.save_safetensors(path, { tensor.zeros { 1 } }) end, "keys must be strings")
  T.raises(function() mio.save_safetensors(path, { w = tensor.zeros { 1 } }, { k = 1 }) end,
    "metadata must map strings to strings")
  T.raises(function() mio.save_safetensors(path, { [""] = tensor.zeros { 1 } }) end, "empty name")
  T.raises(function() mio.save_safetensors(path, { __metadata__ = tensor.zeros { 1 } }) end, "cannot name a tensor")
  T.raises(function() mio.save_safetensors(path, { ["\xff"] = tensor.zeros { 1 } }) end, "not valid UTF%-8")
  T.raises(function() mio.save_safetensors(path, "w") end, "bad argument #2")
  T.raises(function() mio.save_safetensors(nil, {}) end, "bad argument #1")
  T.raises(function() mio.save_safetensors(path .. "\0x", {}) end, "zero byte")
  T.raises(function() mio.load_safetensors(path .. "\0x") end, "zero byte")
  local msg = T.raises(function() mio.save_safetensors(path, { w = {} }) end)
  T.truthy(msg:find(path, 1, true), msg)
  T.eq(io.open(path, "rb"), nil, "nothing written")
  -- a directory in the way: nil, msg, and no temporary file left next to it
  local dir = temp_path("")
  assert(os.execute("mkdir " .. dir))
  local ok, err = mio.save_safetensors(dir, { w = tensor.zeros { 1 } })
  T.eq(ok, nil)
  T.truthy(err:find("rename failed"), err)
  local listing = io.popen("ls -a " .. dir .. "/.. | grep -c '" .. dir:match("[^/]+$") .. ".tmp-'")
  T.eq(listing:read("a"):match("%d+"), "0")
  listing:close()
  os.remove(dir)
end)

T.test("a metadata value with a zero byte is refused at write and at read, naming the key", function()
  local path = temp_path()
  -- once written as "ab" without a word
  local msg = T.raises(function() mio.save_safetensors(path, {}, { ok = "v", k = "ab\0cd" }) end,
    "metadata value of 'k' contains a zero byte")
  T.truthy(msg:find(path, 1, true), msg)
  T.eq(io.open(path, "rb"), nil, "nothing written")
  -- a file written elsewhere with \u0000 in a value
  write_bytes(path, assemble('{"__metadata__":{"k":"ab\\u0000cd"}}'))
  T.raises(function() mio.load_safetensors(path) end, "__metadata__ value of 'k' contains a NUL byte")
  -- every other byte survives the round trip
  local all = {}
  for b = 1, 127 do all[#all + 1] = string.char(b) end
  assert(mio.save_safetensors(path, {}, { k = table.concat(all) }))
  local _, meta = assert(mio.load_safetensors(path))
  T.eq(meta.k, table.concat(all))
  os.remove(path)
end)

T.test("load_safetensors{max_bytes} and tensor.alloc_budget bound a load before anything is allocated", function()
  local path = temp_path()
  assert(mio.save_safetensors(path, { a = tensor.zeros { 16 }, b = tensor.zeros { 16 } })) -- 2 x 64 bytes
  T.raises(function() mio.load_safetensors(path, { max_bytes = 127 }) end,
    "take 128 bytes in memory, more than the allocation budget allows %(127 bytes left%)")
  T.eq(#assert(mio.load_safetensors(path, { max_bytes = 128 })).a:shape(), 1)
  T.raises(function() mio.load_safetensors(path, { max_bytes = -1 }) end, "max_bytes must be a non%-negative integer")
  T.raises(function() mio.load_safetensors(path, { max_bytes = 1.5 }) end, "max_bytes must be a non%-negative integer")
  -- under an outer budget: the smaller bound applies, and what the tensors took is charged to it
  T.eq(tensor.alloc_budget(1000), nil)
  T.raises(function() mio.load_safetensors(path, { max_bytes = 100 }) end, "100 bytes left")
  T.eq(tensor.alloc_budget(nil), 1000, "a refused load charges nothing")
  tensor.alloc_budget(1000)
  assert(mio.load_safetensors(path, { max_bytes = 5000 }))
  T.eq(tensor.alloc_budget(100), 872)
  T.raises(function() mio.load_safetensors(path) end, "100 bytes left")
  tensor.alloc_budget(nil)
  os.remove(path)
end)

T.test("json_encode / json_decode keep integers, floats, nesting and order", function()
  local v = { type = "MLP", args = { { input = 8, hidden = { 256, 256 }, eps = 1e-8, scale = 1.0 } }, n = 1,
              flag = true, off = false, name = "é\"\n" }
  local s = mio.json_encode(v)
  T.eq(s, '{"args":[{"eps":1e-8,"hidden":[256,256],"input":8,"scale":1.0}],"flag":true,"n":1,'
    .. '"name":"é\\"\\n","off":false,"type":"MLP"}')
  local back = mio.json_decode(s)
  T.eq(back, v)
  T.eq(math.type(back.args[1].input), "integer")
  T.eq(math.type(back.args[1].scale), "float")
  T.eq(mio.json_encode({}), "{}")
  T.eq(mio.json_encode(3), "3")
  T.eq(mio.json_encode(0.1), "0.10000000000000001")
  T.eq(mio.json_decode("[1, null, 3]"), { 1, mio.null, 3 })
  T.eq(mio.json_encode({ 1, mio.null }), "[1,null]")
end)

T.test("json_encode rejects what JSON cannot hold, saying where", function()
  T.raises(function() mio.json_encode({ a = { f = print } }) end, "a value of type function %(at %.a%.f%)")
  T.raises(function() mio.json_encode({ x = 0 / 0 }) end, "not finite")
  T.raises(function() mio.json_encode({ x = math.huge }) end, "not finite")
  T.raises(function() mio.json_encode({ 1, 2, x = 3 }) end, "both string and integer keys")
  T.raises(function() mio.json_encode({ [1] = 1, [3] = 3 }) end, "holes")
  T.raises(function() mio.json_encode({ [1.5] = 1 }) end, "neither a string nor a positive integer")
  T.raises(function() mio.json_encode("\xff") end, "not valid UTF%-8")
  local cycle = {}
  cycle.self = cycle
  T.raises(function() mio.json_encode(cycle) end, "nested too deeply")
  T.raises(function() mio.json_decode('{"a": [1, 2}') end, "json_decode: line 1, column %d+")
  T.raises(function() mio.json_decode('{"a": 1, "a": 2}') end, "duplicate")
  T.raises(function() mio.json_decode({}) end, "bad argument #1")
end)

-- ---- nn.save / nn.load -------------------------------------------------------------

local has_nn, nn = pcall(require, "mile.nn")

local function build_policy(seed)
  local gen = tensor.Generator(seed)
  return nn.Sequential(nn.RunningNorm(4, { eps = 1e-6 }),
    nn.MLP { input = 4, hidden = { 8, 8 }, output = 3, generator = gen },
    nn.CategoricalHead())
end

T.test("checkpoint save / load round trip an MLP policy bit for bit", function()
  if not has_nn then T.skip("mile.nn is not available") end
  local path = temp_path()
  local policy = build_policy(1)
  policy:forward(tensor.randn({ 16, 4 }, tensor.Generator(2))) -- moves the RunningNorm statistics
  T.eq(checkpoint.save(path, policy, { step = "1200", run = "demo" }), true)
  local loaded, meta = checkpoint.load(path)
  T.eq(meta.step, "1200")
  T.eq(meta["mile.format_version"], "1")
  T.eq(mio.json_decode(meta["mile.spec"]).type, "Sequential")
  local want, got = policy:state_dict(), loaded:state_dict()
  T.eq(sorted_keys(got), sorted_keys(want))
  for name, t in pairs(want) do
    T.eq(got[name]:dtype(), t:dtype(), name)
    T.eq(got[name]:totable(), t:totable(), name)
  end
  policy:eval()
  loaded:eval()
  local x = tensor.randn({ 5, 4 }, tensor.Generator(3))
  T.eq(loaded:forward(x).logits:totable(), policy:forward(x).logits:totable())
  -- the file is a plain safetensors file too
  local tensors = mio.load_safetensors(path)
  T.eq(sorted_keys(tensors), sorted_keys(want))
  -- a Linear whose spec dropped its generator (a hole in the args) rebuilds
  local lin = nn.Linear(3, 2, { generator = tensor.Generator(5), dtype = "float64" })
  checkpoint.save(path, lin)
  local lin2 = checkpoint.load(path)
  T.eq(lin2.weight:totable(), lin.weight:totable())
  T.eq(lin2.weight:dtype(), "float64")
  os.remove(path)
end)

T.test("nn.save / nn.load are the checkpoint functions", function()
  if not has_nn then T.skip("mile.nn is not available") end
  if nn.save == nil then T.skip("nn.save is not wired into mile.nn yet") end
  local path = temp_path()
  local net = nn.MLP { input = 2, hidden = { 3 }, output = 1, generator = tensor.Generator(4) }
  nn.save(path, net)
  local net2 = nn.load(path)
  T.eq(net2:state_dict()["1.weight"]:totable(), net:state_dict()["1.weight"]:totable())
  os.remove(path)
end)

T.test("checkpoint load explains files that do not match their spec", function()
  if not has_nn then T.skip("mile.nn is not available") end
  local path = temp_path()
  local small = nn.MLP { input = 4, hidden = { 8 }, output = 3 }
  local big = nn.MLP { input = 4, hidden = { 16 }, output = 3 }
  local spec = mio.json_encode(big:spec())
  local function meta(s) return { ["mile.format_version"] = "1", ["mile.spec"] = s } end
  -- the spec builds a bigger network than the tensors
  assert(mio.save_safetensors(path, small:state_dict(), meta(spec)))
  T.raises(function() checkpoint.load(path) end, "tensors do not match the MLP module its spec builds: "
    .. "1%.bias has shape {8} in the file, {16} in the module")
  -- missing and unexpected tensors
  local sd = small:state_dict()
  sd["1.bias"], sd["extra"] = nil, tensor.zeros { 1 }
  assert(mio.save_safetensors(path, sd, meta(mio.json_encode(small:spec()))))
  local msg = T.raises(function() checkpoint.load(path) end, "not in the module: extra")
  T.truthy(msg:find("missing from the file: 1.bias", 1, true), msg)
  T.truthy(msg:find(path, 1, true), msg)
  -- dtypes
  sd = small:state_dict()
  sd["1.bias"] = sd["1.bias"]:double()
  assert(mio.save_safetensors(path, sd, meta(mio.json_encode(small:spec()))))
  T.raises(function() checkpoint.load(path) end, "1%.bias is float64 in the file, float32 in the module")
  -- specs that do not rebuild, versions, files that are not mile checkpoints
  assert(mio.save_safetensors(path, sd, meta('{"type":"NoSuchModule","args":{},"n":0}')))
  T.raises(function() checkpoint.load(path) end, "cannot rebuild the NoSuchModule module")
  assert(mio.save_safetensors(path, sd, meta("{not json")))
  T.raises(function() checkpoint.load(path) end, "mile.spec is not valid JSON")
  assert(mio.save_safetensors(path, sd, { ["mile.format_version"] = "99", ["mile.spec"] = spec }))
  T.raises(function() checkpoint.load(path) end, 'format version "99"')
  assert(mio.save_safetensors(path, sd))
  T.raises(function() checkpoint.load(path) end, "not a mile checkpoint")
  os.remove(path)
  T.raises(function() checkpoint.load(path) end, "nn%.load: .*No such file")
  T.raises(function() checkpoint.save(path, small, { ["mile.spec"] = "x" }) end, "reserved")
  T.raises(function() checkpoint.save(path, {}) end, "expected a module")
  T.raises(function() checkpoint.save(path .. "/no/dir", small) end, "nn%.save: .*No such file")
end)

T.test("loading many checkpoints keeps memory flat", function()
  local path = temp_path()
  assert(mio.save_safetensors(path, { w = tensor.zeros { 256, 256 } }))
  collectgarbage("collect")
  local before = collectgarbage("count")
  for _ = 1, 200 do
    local t = mio.load_safetensors(path)
    assert(t.w:numel() == 65536)
  end
  collectgarbage("collect")
  T.truthy(collectgarbage("count") - before < 1024, "Lua heap grew by " .. (collectgarbage("count") - before) .. " KiB")
  os.remove(path)
end)

T.run()
