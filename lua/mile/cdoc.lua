--- mile.cdoc: the documentation of mile's C functions (lua/src/*.c), one paragraph
--- each, for help(f) in the REPL (mile.doc reads it). Dims and indices are 1-based;
--- a negative dim counts from the end. Ops return new tensors unless their name ends
--- in `_` (in place, returning the tensor itself).
local M = {}

-- mile.tensor.<name>
local tensor = {
  zeros = "zeros(shape [, dtype]) -> a tensor of zeros. shape: {2, 3} or 2, 3; dtype: \"float32\" (default) or \"float64\".",
  ones = "ones(shape [, dtype]) -> a tensor of ones (shape as {2, 3} or 2, 3).",
  full = "full(shape, value [, dtype]) -> a tensor with every element equal to value.",
  empty = "empty(shape [, dtype]) -> a new tensor (zero-filled in mile; do not rely on its contents).",
  scalar = "scalar(value [, dtype]) -> a 0-d tensor holding value.",
  arange = "arange(stop) or arange(start, stop [, step]) [, dtype] -> 1-d tensor start, start+step, ... below stop, like torch.arange.",
  from = "from(nested_table | number [, dtype]) -> a tensor with the shape of the nested tables (all branches the same length), or a 0-d tensor.",
  randn = "randn(shape, generator [, dtype]) -> standard normal samples drawn from a mile.Generator.",
  rand = "rand(shape, generator [, dtype]) -> uniform samples in [0, 1) drawn from a mile.Generator.",
  Generator = "Generator([seed]) -> a random number generator (xoshiro256**) seeded with seed (default 0); every random op takes one explicitly.",
  cat = "cat({a, b, ...} [, dim = 1]) -> the tensors joined along dim (equal sizes on every other dim).",
  where = "where(cond, a, b) -> elementwise a where cond is nonzero, else b (a and b may be numbers; broadcasting).",
  mlp_plan = "mlp_plan({{W1, b1, act1}, {W2, b2, act2}, ...}) -> plan; plan(x) runs act_n(...act_1(x W1^T + b1)...) in one call into buffers the plan owns, with no autograd graph (inference). act: \"relu\", \"tanh\", \"sigmoid\" or \"none\"; b may be nil. The same bits as the layers one by one; nn's compile_forward builds these.",
  is_tensor = "is_tensor(x) -> true when x is a mile tensor.",
  alloc_budget = "alloc_budget(bytes | nil) -> the budget left before (nil when unbounded): bound the bytes new tensors may take on this thread from now on; nil removes the bound.",
}

-- methods of tensors (t:name(...)), also mile.tensor.name(t, ...)
local unary = {
  neg = "-t", exp = "e^t", log = "the natural logarithm", log1p = "log(1 + t), accurate near 0",
  expm1 = "e^t - 1, accurate near 0", sqrt = "the square root", abs = "the absolute value",
  tanh = "the hyperbolic tangent", sigmoid = "1 / (1 + e^-t)", relu = "max(t, 0)",
  normal_cdf = "Phi(t), the standard normal CDF", log_normal_cdf = "ln Phi(t), accurate far in both tails",
  softplus = "ln(1 + e^t), without overflow",
}
local binary = {
  add = "a + b", sub = "a - b", mul = "a * b", div = "a / b", pow = "a ^ b", maximum = "max(a, b)",
  minimum = "min(a, b)", eq = "1 where a == b, else 0", ne = "1 where a ~= b, else 0", lt = "1 where a < b, else 0",
  le = "1 where a <= b, else 0", gt = "1 where a > b, else 0", ge = "1 where a >= b, else 0",
}
local Tensor = {
  shape = "t:shape() -> the sizes as a table, e.g. {2, 3}.",
  size = "t:size([dim]) -> the size of dim, or the shape as a table without dim.",
  dim = "t:dim() -> the number of dims (0 for a scalar tensor).",
  numel = "t:numel() -> the number of elements.",
  dtype = "t:dtype() -> \"float32\" or \"float64\".",
  stride = "t:stride([dim]) -> the stride of dim in elements, or all strides as a table.",
  is_contiguous = "t:is_contiguous() -> true when the elements are laid out row-major without gaps.",
  item = "t:item() -> the value of a one-element tensor as a Lua number.",
  totable = "t:totable() -> nested Lua tables of numbers (a number for a 0-d tensor).",
  view = "t:view(shape) -> a view with a new shape (same storage; t must be contiguous; one size may be -1).",
  reshape = "t:reshape(shape) -> t with a new shape: a view when possible, else a copy (one size may be -1).",
  expand = "t:expand(shape) -> a view broadcasting size-1 dims to shape (no copy; -1 keeps a size).",
  expand_as = "t:expand_as(other) -> t:expand(other:shape()).",
  transpose = "t:transpose(d1, d2) -> a view with dims d1 and d2 swapped.",
  t = "t:t() -> the transpose of a 2-d tensor (a view).",
  permute = "t:permute(d1, d2, ...) -> a view with the dims reordered.",
  narrow = "t:narrow(dim, start, length) -> a view of length elements of dim from start (1-based).",
  select = "t:select(dim, index) -> a view of one index of dim, with that dim removed.",
  squeeze = "t:squeeze([dim]) -> a view without size-1 dims (or without dim when it has size 1).",
  unsqueeze = "t:unsqueeze(dim) -> a view with a new size-1 dim at dim.",
  contiguous = "t:contiguous() -> t when contiguous, else a contiguous copy.",
  clone = "t:clone() -> a copy with its own storage (recorded by autograd).",
  to = "t:to(dtype) -> t converted to \"float32\" or \"float64\" (t itself when it has that dtype).",
  float = "t:float() -> t:to(\"float32\").",
  double = "t:double() -> t:to(\"float64\").",
  clamp = "t:clamp(lo, hi) -> t limited to [lo, hi]; nil leaves a side open.",
  sum = "t:sum([dim [, keepdim]]) -> the sum over dim, or over all elements (a 0-d tensor).",
  mean = "t:mean([dim [, keepdim]]) -> the mean over dim, or over all elements.",
  logsumexp = "t:logsumexp([dim [, keepdim]]) -> ln sum e^t over dim (or all elements), without overflow.",
  max = "t:max() -> the largest element (0-d); t:max(dim [, keepdim]) -> values, 1-based indices.",
  min = "t:min() -> the smallest element (0-d); t:min(dim [, keepdim]) -> values, 1-based indices.",
  argmax = "t:argmax([dim [, keepdim]]) -> the 1-based index of the largest element over dim (or of the flattened tensor).",
  argmin = "t:argmin([dim [, keepdim]]) -> the 1-based index of the smallest element over dim (or of the flattened tensor).",
  softmax = "t:softmax([dim = last]) -> e^t normalised to sum 1 over dim.",
  log_softmax = "t:log_softmax([dim = last]) -> ln softmax over dim, computed stably.",
  gather = "t:gather(dim, index) -> out[i][j] = t[i][index[i][j]] along dim (1-based index tensor or table).",
  index_select = "t:index_select(dim, index) -> the slices of dim at the 1-based indices, in order.",
  matmul = "a:matmul(b) -> the matrix product a b (row-major; 1-d and batched operands as in torch.matmul).",
  linear = "x:linear(W [, b [, act]]) -> act(x W^T + b), as torch.nn.functional.linear followed by the activation act (\"relu\", \"tanh\", \"sigmoid\", default \"none\") in one fused op and one autograd node.",
  fill_ = "t:fill_(value) -> t with every element set to value (in place).",
  zero_ = "t:zero_() -> t with every element set to 0 (in place).",
  copy_ = "t:copy_(src) -> t with src's values copied in (broadcast, converted to t's dtype; in place).",
  uniform_ = "t:uniform_(generator [, lo = 0, hi = 1]) -> t filled with uniform samples in [lo, hi) (in place).",
  normal_ = "t:normal_(generator [, mean = 0, sd = 1]) -> t filled with normal samples (in place).",
  requires_grad = "t:requires_grad() -> whether autograd tracks t; t:requires_grad(flag) -> t, marking a leaf.",
  backward = "t:backward([grad [, retain_graph]]) or t:backward{grad =, retain_graph =}: accumulate d t / d leaf into each leaf's .grad (grad may be omitted for one element).",
  zero_grad = "t:zero_grad() -> t, with its .grad dropped.",
  detach = "t:detach() -> a tensor sharing t's storage, outside the autograd graph.",
  set_grad = "t:set_grad(g | nil): set (or drop) t's .grad; g must have t's shape.",
  storage_id = "t:storage_id() -> an identity of t's storage (equal for views of the same storage).",
}
for name, what in pairs(unary) do
  Tensor[name] = ("t:%s() -> %s, elementwise (recorded by autograd)."):format(name, what)
end
for name, what in pairs(binary) do
  Tensor[name] = ("a:%s(b) -> %s, elementwise with broadcasting; b may be a number."):format(name, what)
end

-- methods of mile.Generator values
local Generator = {
  seed = "g:seed(n): restart the generator from seed n.",
  uniform = "g:uniform() -> a number in [0, 1); g:uniform(lo, hi) -> one in [lo, hi).",
  normal = "g:normal([mean = 0, sd = 1]) -> a normal sample.",
  integer = "g:integer(n) -> an integer in 1..n; g:integer(lo, hi) -> one in lo..hi, like math.random.",
  categorical = "g:categorical(probs) -> a 0-based category drawn with the given probabilities (a tensor or table).",
  permutation = "g:permutation(n) -> a Lua array holding a random permutation of 1..n.",
  state = "g:state() -> the generator's state as a string (for checkpoints).",
  set_state = "g:set_state(s): restore a state returned by g:state().",
}

-- C functions that Lua modules re-export, by module name
M.modules = {
  ["mile.tensor"] = tensor,
  ["mile.io"] = {
    save_safetensors = "save_safetensors(path, {name = tensor}, [metadata]) -> true, or nil, message: write the tensors as a safetensors file (string metadata in its header).",
    load_safetensors = "load_safetensors(path [, {max_bytes = n}]) -> {name = tensor}, metadata; or nil, message when the file cannot be read or is malformed.",
    json_encode = "json_encode(value) -> the JSON text of a Lua value (tables with 1..n keys become arrays, others objects).",
    json_decode = "json_decode(text) -> the Lua value of a JSON text (null becomes nil in arrays' holes); raises on malformed JSON.",
  },
  ["mile.autograd"] = {
    grad_enabled = "grad_enabled() -> whether ops are recorded for backward now (see no_grad).",
    set_grad_enabled = "set_grad_enabled(flag) -> the previous setting: turn recording of ops for backward on or off.",
  },
  ["mile.envs"] = {
    concat = "concat(t1, t2, ...) -> the 1-d tensors (observations) joined into one.",
  },
}
M.tensor, M.Tensor, M.Generator = tensor, Tensor, Generator
return M
