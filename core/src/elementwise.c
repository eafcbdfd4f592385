/* elementwise.c - unary and binary elementwise ops, clamp, where, and their backward.
 *
 * Each op is one line of an X-macro table: forward expression and gradient
 * expression side by side. <tgmath.h> picks expf or exp from the element type,
 * so one expression serves float32 and float64. */
#include <tgmath.h>
#include <string.h>

#include "fastmath.h"
#include "internal.h"

/* exp and tanh: the vectorisable float32 versions, libm for float64 */
#define EXP(x) _Generic((x), float: mile_expf, default: exp)(x)
#define TANH(x) _Generic((x), float: mile_tanhf, default: tanh)(x)

/* ---- unary ------------------------------------------------------------------- */
/* X(op, name, forward of x, gradient from g, x and the output y) */
#define UNARY_OPS(X)                                                                  \
  X(MILE_NEG, neg, -x, -g)                                                            \
  X(MILE_EXP, exp, EXP(x), g * y)                                                     \
  X(MILE_LOG, log, log(x), g / x)                                                     \
  X(MILE_LOG1P, log1p, log1p(x), g / (1 + x))                                         \
  X(MILE_EXPM1, expm1, expm1(x), g * (y + 1))                                         \
  X(MILE_SQRT, sqrt, sqrt(x), g / (2 * y))                                            \
  X(MILE_ABS, abs, fabs(x), x > 0 ? g : x < 0 ? -g : 0)                               \
  X(MILE_TANH, tanh, TANH(x), g * (1 - y * y))                                        \
  X(MILE_SIGMOID, sigmoid, 1 / (1 + EXP(-x)), g * y * (1 - y))                        \
  X(MILE_RELU, relu, x > 0 ? x : 0, x > 0 ? g : 0)                                    \
  X(MILE_NORMAL_CDF, normal_cdf, mile_normal_cdf_d(x), g * exp(-0.5 * x * x) * 0.39894228040143267794) \
  X(MILE_LOG_NORMAL_CDF, log_normal_cdf, mile_log_normal_cdf_d(x), g * mile_normal_hazard_d(x)) \
  X(MILE_SOFTPLUS, softplus, x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)), g / (1 + exp(-x)))

#define DEF_UNARY(OP, NAME, FWD, BWD, T, SFX)                                              \
  static void unary_##NAME##_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) { \
    T *o = (T *)p[0];                                                                       \
    const T *xs = (const T *)p[1];                                                          \
    if (s[0] == 1 && s[1] == 1)                                                             \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T x = xs[i];                                                                        \
        o[i] = (T)(FWD);                                                                    \
      }                                                                                     \
    else                                                                                    \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T x = xs[i * s[1]];                                                                 \
        o[i * s[0]] = (T)(FWD);                                                             \
      }                                                                                     \
  }                                                                                         \
  static void unary_grad_##NAME##_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) { \
    T *o = (T *)p[0];                                                                       \
    const T *gs = (const T *)p[1], *xs = (const T *)p[2], *ys = (const T *)p[3];            \
    for (int64_t i = 0; i < n; i++) {                                                       \
      T g = gs[i * s[1]], x = xs[i * s[2]], y = ys[i * s[3]];                               \
      (void)g, (void)x, (void)y;                                                            \
      o[i * s[0]] = (T)(BWD);                                                               \
    }                                                                                       \
  }
#define DEF_UNARY_BOTH(OP, NAME, FWD, BWD) DEF_UNARY(OP, NAME, FWD, BWD, float, f32) DEF_UNARY(OP, NAME, FWD, BWD, double, f64)
UNARY_OPS(DEF_UNARY_BOTH)

typedef struct unary_def {
  const char *name;
  mile_loop_fn forward[2], backward[2];
} unary_def;
#define UNARY_ENTRY(OP, NAME, FWD, BWD) \
  [OP] = {#NAME, {unary_##NAME##_f32, unary_##NAME##_f64}, {unary_grad_##NAME##_f32, unary_grad_##NAME##_f64}},
static const unary_def unary_defs[MILE_UNARY_COUNT] = {UNARY_OPS(UNARY_ENTRY)};

const char *mile_unary_name(mile_unary_op op) {
  return (unsigned)op < MILE_UNARY_COUNT ? unary_defs[op].name : "unknown";
}

static mile_status unary_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *x, *y;
  MILE_TRY(mile_node_saved(node, 0, &x));
  MILE_TRY(mile_node_saved(node, 1, &y));
  MILE_TRY(mile_empty(&grads[0], (mile_dtype)x->dtype, x->ndim, x->shape));
  const mile_tensor *ops[4] = {grads[0], g, x, y};
  mile_loop_run(4, ops, x->ndim, x->shape, unary_defs[node->iparam[0]].backward[x->dtype], NULL);
  return MILE_OK;
}

/* Give *out a node unless recording fails (then *out is released and NULLed). */
static mile_status record_or_drop(mile_tensor **out, const char *name, mile_backward_fn backward, int32_t n,
                                  mile_tensor *const *inputs, mile_node **node) {
  mile_status st = mile_record(*out, name, backward, n, inputs, node);
  if (st != MILE_OK) {
    mile_tensor_release(*out);
    *out = NULL;
  }
  return st;
}

/* Save the node's own output; on failure drop it. */
static mile_status save_output(mile_tensor **out, mile_node *node) {
  mile_status st = mile_node_save(node, *out);
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}

mile_status mile_unary(mile_tensor **out, mile_unary_op op, mile_tensor *a) {
  *out = NULL;
  if ((unsigned)op >= MILE_UNARY_COUNT) return mile_set_error(MILE_ERR_ARGUMENT, "unary: unknown op %d", (int)op);
  MILE_TRY(mile_empty(out, (mile_dtype)a->dtype, a->ndim, a->shape));
  const mile_tensor *ops[2] = {*out, a};
  mile_loop_run(2, ops, a->ndim, a->shape, unary_defs[op].forward[a->dtype], NULL);
  mile_node *node;
  MILE_TRY(record_or_drop(out, unary_defs[op].name, unary_backward, 1, &a, &node));
  if (node) {
    node->iparam[0] = op;
    mile_node_save(node, a);
    return save_output(out, node);
  }
  return MILE_OK;
}

/* ---- binary ------------------------------------------------------------------ */
/* X(op, name, forward of x and y, gradient for x, gradient for y) from g, x, y */
#define BINARY_OPS(X)                                                                   \
  X(MILE_ADD, add, x + y, g, g)                                                         \
  X(MILE_SUB, sub, x - y, g, -g)                                                        \
  X(MILE_MUL, mul, x * y, g * y, g * x)                                                 \
  X(MILE_DIV, div, x / y, g / y, -g * x / (y * y))                                      \
  X(MILE_POW, pow, pow(x, y), y == 0 ? 0 : g * y * pow(x, y - 1),                       \
    x > 0 ? g * pow(x, y) * log(x) : 0)                                                 \
  X(MILE_MAXIMUM, maximum, x >= y ? x : y, x > y ? g : x == y ? g / 2 : 0,              \
    y > x ? g : x == y ? g / 2 : 0)                                                     \
  X(MILE_MINIMUM, minimum, x <= y ? x : y, x < y ? g : x == y ? g / 2 : 0,              \
    y < x ? g : x == y ? g / 2 : 0)                                                     \
  X(MILE_EQ, eq, x == y, 0, 0)                                                          \
  X(MILE_NE, ne, x != y, 0, 0)                                                          \
  X(MILE_LT, lt, x < y, 0, 0)                                                           \
  X(MILE_LE, le, x <= y, 0, 0)                                                          \
  X(MILE_GT, gt, x > y, 0, 0)                                                           \
  X(MILE_GE, ge, x >= y, 0, 0)

#define DEF_BINARY(OP, NAME, FWD, GX, GY, T, SFX)                                          \
  static void binary_##NAME##_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) { \
    T *o = (T *)p[0];                                                                       \
    const T *xs = (const T *)p[1], *ys = (const T *)p[2];                                   \
    if (s[0] == 1 && s[1] == 1 && s[2] == 1)                                                \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T x = xs[i], y = ys[i];                                                             \
        o[i] = (T)(FWD);                                                                    \
      }                                                                                     \
    else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                        \
      T y = ys[0];                                                                          \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T x = xs[i];                                                                        \
        o[i] = (T)(FWD);                                                                    \
      }                                                                                     \
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                       \
      T x = xs[0];                                                                          \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T y = ys[i];                                                                        \
        o[i] = (T)(FWD);                                                                    \
      }                                                                                     \
    } else                                                                                  \
      for (int64_t i = 0; i < n; i++) {                                                     \
        T x = xs[i * s[1]], y = ys[i * s[2]];                                               \
        o[i * s[0]] = (T)(FWD);                                                             \
      }                                                                                     \
  }                                                                                         \
  static void binary_grad_##NAME##_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) { \
    T *o = (T *)p[0];                                                                       \
    const T *gs = (const T *)p[1], *xs = (const T *)p[2], *ys = (const T *)p[3];            \
    bool for_y = *(const int *)ctx;                                                         \
    for (int64_t i = 0; i < n; i++) {                                                       \
      T g = gs[i * s[1]], x = xs[i * s[2]], y = ys[i * s[3]];                               \
      (void)g, (void)x, (void)y;                                                            \
      o[i * s[0]] = for_y ? (T)(GY) : (T)(GX);                                              \
    }                                                                                       \
  }
#define DEF_BINARY_BOTH(OP, NAME, FWD, GX, GY) \
  DEF_BINARY(OP, NAME, FWD, GX, GY, float, f32) DEF_BINARY(OP, NAME, FWD, GX, GY, double, f64)
BINARY_OPS(DEF_BINARY_BOTH)

typedef struct binary_def {
  const char *name;
  mile_loop_fn forward[2], backward[2];
} binary_def;
#define BINARY_ENTRY(OP, NAME, FWD, GX, GY) \
  [OP] = {#NAME, {binary_##NAME##_f32, binary_##NAME##_f64}, {binary_grad_##NAME##_f32, binary_grad_##NAME##_f64}},
static const binary_def binary_defs[MILE_BINARY_COUNT] = {BINARY_OPS(BINARY_ENTRY)};

const char *mile_binary_name(mile_binary_op op) {
  return (unsigned)op < MILE_BINARY_COUNT ? binary_defs[op].name : "unknown";
}

static bool is_comparison(mile_binary_op op) { return op >= MILE_EQ; }

/* add and sub need no input values in backward; the others save both inputs */
static bool reads_inputs(mile_binary_op op) { return op != MILE_ADD && op != MILE_SUB; }

static mile_status binary_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_binary_op op = (mile_binary_op)node->iparam[0];
  mile_tensor *x = node->inputs[0], *y = node->inputs[1];
  if (reads_inputs(op)) {
    MILE_TRY(mile_node_saved(node, 0, &x));
    MILE_TRY(mile_node_saved(node, 1, &y));
  }
  for (int side = 0; side < 2; side++) {
    if (!node->needs[side]) continue;
    if (op == MILE_ADD || (op == MILE_SUB && side == 0)) { /* the gradient is g itself */
      grads[side] = mile_tensor_retain(g);
      continue;
    }
    if (op == MILE_SUB) {
      MILE_TRY(mile_unary(&grads[side], MILE_NEG, g));
      continue;
    }
    MILE_TRY(mile_empty(&grads[side], (mile_dtype)g->dtype, g->ndim, g->shape));
    const mile_tensor *ops[4] = {grads[side], g, x, y};
    mile_loop_run(4, ops, g->ndim, g->shape, binary_defs[op].backward[g->dtype], &side);
  }
  return MILE_OK;
}

mile_status mile_binary(mile_tensor **out, mile_binary_op op, mile_tensor *a, mile_tensor *b) {
  *out = NULL;
  if ((unsigned)op >= MILE_BINARY_COUNT) return mile_set_error(MILE_ERR_ARGUMENT, "binary: unknown op %d", (int)op);
  const char *name = binary_defs[op].name;
  MILE_TRY(mile_check_same_dtype(name, a, b));
  int32_t nd;
  int64_t shape[MILE_MAX_DIMS];
  MILE_TRY(mile_broadcast_shape(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
  MILE_TRY(mile_empty(out, (mile_dtype)a->dtype, nd, shape));
  const mile_tensor *ops[3] = {*out, a, b};
  mile_loop_run(3, ops, nd, shape, binary_defs[op].forward[a->dtype], NULL);
  if (is_comparison(op)) return MILE_OK;
  mile_tensor *inputs[2] = {a, b};
  mile_node *node;
  MILE_TRY(record_or_drop(out, name, binary_backward, 2, inputs, &node));
  if (node) {
    node->iparam[0] = op;
    if (reads_inputs(op)) mile_node_save(node, a), mile_node_save(node, b);
  }
  return MILE_OK;
}

mile_status mile_binary_scalar(mile_tensor **out, mile_binary_op op, mile_tensor *a, double s, int32_t scalar_first) {
  *out = NULL;
  mile_tensor *c;
  MILE_TRY(mile_scalar(&c, (mile_dtype)a->dtype, s));
  mile_status st = scalar_first ? mile_binary(out, op, c, a) : mile_binary(out, op, a, c);
  mile_tensor_release(c);
  return st;
}

/* ---- clamp ------------------------------------------------------------------- */

typedef struct clamp_ctx { double lo, hi; } clamp_ctx;

#define DEF_CLAMP(T, SFX)                                                                   \
  static void clamp_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) {         \
    const clamp_ctx *c = ctx;                                                               \
    T *o = (T *)p[0], lo = (T)c->lo, hi = (T)c->hi;                                         \
    const T *xs = (const T *)p[1];                                                          \
    for (int64_t i = 0; i < n; i++) {                                                       \
      T x = xs[i * s[1]];                                                                   \
      o[i * s[0]] = x < lo ? lo : x > hi ? hi : x;                                          \
    }                                                                                       \
  }                                                                                         \
  static void clamp_grad_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) {    \
    const clamp_ctx *c = ctx;                                                               \
    T *o = (T *)p[0], lo = (T)c->lo, hi = (T)c->hi;                                         \
    const T *gs = (const T *)p[1], *xs = (const T *)p[2];                                   \
    for (int64_t i = 0; i < n; i++) {                                                       \
      T x = xs[i * s[2]];                                                                   \
      o[i * s[0]] = (x >= lo && x <= hi) ? gs[i * s[1]] : 0;                                \
    }                                                                                       \
  }
DEF_CLAMP(float, f32)
DEF_CLAMP(double, f64)

static mile_status clamp_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *x;
  MILE_TRY(mile_node_saved(node, 0, &x));
  clamp_ctx c = {node->dparam[0], node->dparam[1]};
  MILE_TRY(mile_empty(&grads[0], (mile_dtype)x->dtype, x->ndim, x->shape));
  const mile_tensor *ops[3] = {grads[0], g, x};
  mile_loop_run(3, ops, x->ndim, x->shape, x->dtype == MILE_FLOAT64 ? clamp_grad_f64 : clamp_grad_f32, &c);
  return MILE_OK;
}

mile_status mile_clamp(mile_tensor **out, mile_tensor *a, double lo, double hi) {
  *out = NULL;
  if (isnan(lo) || isnan(hi) || lo > hi)
    return mile_set_error(MILE_ERR_ARGUMENT, "clamp: bounds [%g, %g] are not an interval", lo, hi);
  clamp_ctx c = {lo, hi};
  MILE_TRY(mile_empty(out, (mile_dtype)a->dtype, a->ndim, a->shape));
  const mile_tensor *ops[2] = {*out, a};
  mile_loop_run(2, ops, a->ndim, a->shape, a->dtype == MILE_FLOAT64 ? clamp_f64 : clamp_f32, &c);
  mile_node *node;
  MILE_TRY(record_or_drop(out, "clamp", clamp_backward, 1, &a, &node));
  if (node) {
    node->dparam[0] = lo, node->dparam[1] = hi;
    mile_node_save(node, a);
  }
  return MILE_OK;
}

/* ---- where ------------------------------------------------------------------- */

#define DEF_WHERE(T, SFX)                                                                   \
  static void where_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) {         \
    T *o = (T *)p[0];                                                                       \
    const T *c = (const T *)p[1], *a = (const T *)p[2], *b = (const T *)p[3];               \
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = c[i * s[1]] != 0 ? a[i * s[2]] : b[i * s[3]]; \
  }                                                                                         \
  static void where_grad_##SFX(int64_t n, char **p, const int64_t *s, const void *ctx) {    \
    T *o = (T *)p[0];                                                                       \
    const T *c = (const T *)p[1], *g = (const T *)p[2];                                     \
    bool keep_true = *(const int *)ctx == 0;                                                \
    for (int64_t i = 0; i < n; i++) o[i * s[0]] = ((c[i * s[1]] != 0) == keep_true) ? g[i * s[2]] : 0; \
  }
DEF_WHERE(float, f32)
DEF_WHERE(double, f64)

static mile_status where_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_tensor *cond;
  MILE_TRY(mile_node_saved(node, 0, &cond)); /* fails when cond was changed in place */
  for (int side = 0; side < 2; side++) {
    if (!node->needs[side + 1]) continue;
    MILE_TRY(mile_empty(&grads[side + 1], (mile_dtype)g->dtype, g->ndim, g->shape));
    const mile_tensor *ops[3] = {grads[side + 1], cond, g};
    mile_loop_run(3, ops, g->ndim, g->shape, g->dtype == MILE_FLOAT64 ? where_grad_f64 : where_grad_f32, &side);
  }
  return MILE_OK;
}

mile_status mile_where(mile_tensor **out, mile_tensor *cond, mile_tensor *a, mile_tensor *b) {
  *out = NULL;
  MILE_TRY(mile_check_same_dtype("where", a, b));
  MILE_TRY(mile_check_same_dtype("where", cond, a));
  int32_t nd, nab;
  int64_t shape[MILE_MAX_DIMS], ab[MILE_MAX_DIMS]; /* separate arrays: broadcast_shape must not alias */
  MILE_TRY(mile_broadcast_shape("where", a->ndim, a->shape, b->ndim, b->shape, &nab, ab));
  MILE_TRY(mile_broadcast_shape("where", cond->ndim, cond->shape, nab, ab, &nd, shape));
  MILE_TRY(mile_empty(out, (mile_dtype)a->dtype, nd, shape));
  const mile_tensor *ops[4] = {*out, cond, a, b};
  mile_loop_run(4, ops, nd, shape, a->dtype == MILE_FLOAT64 ? where_f64 : where_f32, NULL);
  mile_tensor *inputs[3] = {cond, a, b};
  mile_node *node;
  MILE_TRY(record_or_drop(out, "where", where_backward, 3, inputs, &node));
  if (node) mile_node_save(node, cond); /* backward reads it: keep its version */
  return MILE_OK;
}
