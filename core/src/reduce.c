/* reduce.c - sum, mean, max, min, logsumexp over one dim or all, arg-extremes,
 * softmax and log_softmax, and their backward.
 *
 * Every kernel sees the input as contiguous [outer, n, inner] with the reduced
 * dim in the middle; sums accumulate in double. */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct layout { int64_t outer, n, inner; } layout;

static layout layout_of(const mile_tensor *t, int32_t dim) {
  layout l = {1, 1, 1};
  if (dim == MILE_ALL_DIMS) {
    l.n = mile_numel(t);
    return l;
  }
  for (int32_t i = 0; i < t->ndim; i++) {
    if (i < dim) l.outer *= t->shape[i];
    else if (i == dim) l.n = t->shape[i];
    else l.inner *= t->shape[i];
  }
  return l;
}

/* Output shape of a reduction. */
static int32_t reduced_shape(const mile_tensor *t, int32_t dim, int32_t keepdim, int64_t *shape) {
  int32_t nd = 0;
  for (int32_t i = 0; i < t->ndim; i++) {
    if (dim == MILE_ALL_DIMS || i == dim) {
      if (keepdim) shape[nd++] = 1;
    } else {
      shape[nd++] = t->shape[i];
    }
  }
  return nd;
}

static mile_status check_reduce_dim(const char *fname, const mile_tensor *t, int32_t dim) {
  if (dim == MILE_ALL_DIMS) return MILE_OK;
  return mile_check_dim(fname, t, dim);
}

#define DEF_REDUCE(T, SFX)                                                                  \
  static void reduce_##SFX(mile_reduce_op op, const T *x, T *y, T *arg, layout l) {        \
    for (int64_t o = 0; o < l.outer; o++)                                                   \
      for (int64_t j = 0; j < l.inner; j++) {                                               \
        const T *row = x + o * l.n * l.inner + j;                                           \
        int64_t out = o * l.inner + j;                                                      \
        if (op == MILE_SUM || op == MILE_MEAN) {                                            \
          double acc = 0;                                                                   \
          for (int64_t k = 0; k < l.n; k++) acc += row[k * l.inner];                        \
          y[out] = (T)(op == MILE_MEAN ? acc / (double)l.n : acc);                          \
        } else if (op == MILE_MAX || op == MILE_MIN) {                                      \
          T best = row[0];                                                                  \
          int64_t at = 0;                                                                   \
          for (int64_t k = 1; k < l.n; k++) {                                               \
            T v = row[k * l.inner];                                                         \
            if (isnan(best)) break;                                                         \
            if (isnan(v) || (op == MILE_MAX ? v > best : v < best)) best = v, at = k;       \
          }                                                                                 \
          y[out] = best;                                                                    \
          if (arg) arg[out] = (T)at;                                                        \
        } else { /* logsumexp, shifted by the max */                                        \
          T m = row[0];                                                                     \
          for (int64_t k = 1; k < l.n; k++) m = row[k * l.inner] > m ? row[k * l.inner] : m; \
          if (isinf(m)) {                                                                   \
            y[out] = m;                                                                     \
            continue;                                                                       \
          }                                                                                 \
          double acc = 0;                                                                   \
          for (int64_t k = 0; k < l.n; k++) acc += exp((double)row[k * l.inner] - (double)m); \
          y[out] = (T)((double)m + log(acc));                                               \
        }                                                                                   \
      }                                                                                     \
  }
DEF_REDUCE(float, f32)
DEF_REDUCE(double, f64)

/* Sum and mean, the hot reductions of a training step (bias gradients are column sums,
 * losses are means). Reducing a middle dim (inner > 1) runs k outside j, so the loads
 * are contiguous and the adds of neighbouring outputs vectorise, with the same
 * summation order per output as a plain loop; a last-dim reduction (inner == 1) keeps
 * 8 partial sums to break the chain of dependent adds. Accumulates in double. */
enum { SUM_BLOCK = 256 };
#define DEF_SUM(T, SFX)                                                                      \
  static void sum_##SFX(const T *x, T *y, layout l, bool mean) {                            \
    for (int64_t o = 0; o < l.outer; o++) {                                                 \
      const T *base = x + o * l.n * l.inner;                                                \
      if (l.inner == 1) {                                                                   \
        double p[8] = {0}, acc = 0;                                                         \
        int64_t k = 0;                                                                      \
        for (; k + 8 <= l.n; k += 8)                                                        \
          for (int u = 0; u < 8; u++) p[u] += (double)base[k + u];                          \
        for (; k < l.n; k++) acc += (double)base[k];                                        \
        acc += ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));           \
        y[o] = (T)(mean ? acc / (double)l.n : acc);                                         \
        continue;                                                                           \
      }                                                                                     \
      for (int64_t j0 = 0; j0 < l.inner; j0 += SUM_BLOCK) {                                 \
        int64_t nb = l.inner - j0 < SUM_BLOCK ? l.inner - j0 : SUM_BLOCK;                   \
        double acc[SUM_BLOCK];                                                              \
        for (int64_t j = 0; j < nb; j++) acc[j] = 0;                                        \
        for (int64_t k = 0; k < l.n; k++) {                                                 \
          const T *row = base + k * l.inner + j0;                                           \
          for (int64_t j = 0; j < nb; j++) acc[j] += (double)row[j];                        \
        }                                                                                   \
        T *dst = y + o * l.inner + j0;                                                      \
        for (int64_t j = 0; j < nb; j++) dst[j] = (T)(mean ? acc[j] / (double)l.n : acc[j]); \
      }                                                                                     \
    }                                                                                       \
  }
DEF_SUM(float, f32)
DEF_SUM(double, f64)

static const char *const reduce_names[MILE_REDUCE_COUNT] = {"sum", "mean", "max", "min", "logsumexp"};
const char *mile_reduce_name(mile_reduce_op op) {
  return (unsigned)op < MILE_REDUCE_COUNT ? reduce_names[op] : "unknown";
}

/* The reduced gradient g broadcast back over the input's shape (a view). */
static mile_status expand_back(mile_tensor **out, mile_tensor *g, const mile_tensor *x, int32_t dim, int32_t keepdim) {
  mile_tensor *k = NULL;
  if (dim == MILE_ALL_DIMS || keepdim) {
    int64_t shape[MILE_MAX_DIMS];
    for (int32_t i = 0; i < x->ndim; i++) shape[i] = (dim == MILE_ALL_DIMS || i == dim) ? 1 : x->shape[i];
    MILE_TRY(mile_reshape(&k, g, x->ndim, shape));
  } else {
    MILE_TRY(mile_unsqueeze(&k, g, dim));
  }
  mile_status st = mile_expand(out, k, x->ndim, x->shape);
  mile_tensor_release(k);
  return st;
}

static mile_status reduce_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_reduce_op op = (mile_reduce_op)node->iparam[0];
  int32_t dim = (int32_t)node->iparam[1], keepdim = (int32_t)node->iparam[2];
  mile_tensor *x = node->inputs[0], *ge = NULL, *ye = NULL, *t1 = NULL, *t2 = NULL, *t3 = NULL;
  mile_status st = expand_back(&ge, g, x, dim, keepdim);
  if (st != MILE_OK) return st;
  if (op == MILE_SUM) {
    grads[0] = ge;
    return MILE_OK;
  }
  if (op == MILE_MEAN) {
    st = mile_binary_scalar(&grads[0], MILE_DIV, ge, (double)layout_of(x, dim).n, 0);
    mile_tensor_release(ge);
    return st;
  }
  mile_tensor *y;
  st = mile_node_saved(node, 0, &x);
  if (st == MILE_OK) st = mile_node_saved(node, 1, &y);
  if (st == MILE_OK) st = expand_back(&ye, y, x, dim, keepdim);
  if (st == MILE_OK && op == MILE_LOGSUMEXP) { /* g * exp(x - y) */
    st = mile_binary(&t1, MILE_SUB, x, ye);
    if (st == MILE_OK) st = mile_unary(&t2, MILE_EXP, t1);
    if (st == MILE_OK) st = mile_binary(&grads[0], MILE_MUL, ge, t2);
  } else if (st == MILE_OK) { /* max / min: g shared equally by the elements equal to the extreme */
    st = mile_binary(&t1, MILE_EQ, x, ye);
    if (st == MILE_OK) st = mile_reduce(&t2, MILE_SUM, t1, dim, 1);
    if (st == MILE_OK) st = mile_binary(&t3, MILE_MUL, ge, t1);
    if (st == MILE_OK) st = mile_binary(&grads[0], MILE_DIV, t3, t2);
  }
  mile_tensor_release(ge), mile_tensor_release(ye);
  mile_tensor_release(t1), mile_tensor_release(t2), mile_tensor_release(t3);
  return st;
}

/* Shared by reductions and arg-reductions: contiguous input, output (and arg) allocated. */
static mile_status reduce_core(const char *fname, mile_reduce_op op, mile_tensor *a, int32_t dim, int32_t keepdim,
                               mile_tensor **out, mile_tensor **arg) {
  *out = NULL;
  if (arg) *arg = NULL;
  MILE_TRY(check_reduce_dim(fname, a, dim));
  layout l = layout_of(a, dim);
  if (l.n == 0 && op != MILE_SUM && op != MILE_MEAN) {
    char b[96];
    return mile_set_error(MILE_ERR_SHAPE, "%s: cannot reduce an empty dim of a %s tensor", fname,
                          mile_shape_str(a, b, sizeof b));
  }
  int64_t shape[MILE_MAX_DIMS];
  int32_t nd = reduced_shape(a, dim, keepdim, shape);
  mile_tensor *c;
  MILE_TRY(mile_contiguous(&c, a));
  mile_status st = mile_empty(out, (mile_dtype)a->dtype, nd, shape);
  if (st == MILE_OK && arg) st = mile_empty(arg, (mile_dtype)a->dtype, nd, shape);
  if (st == MILE_OK && (op == MILE_SUM || op == MILE_MEAN)) {
    if (a->dtype == MILE_FLOAT64) sum_f64(mile_data(c), mile_data(*out), l, op == MILE_MEAN);
    else sum_f32(mile_data(c), mile_data(*out), l, op == MILE_MEAN);
  } else if (st == MILE_OK) {
    if (a->dtype == MILE_FLOAT64)
      reduce_f64(op, mile_data(c), mile_data(*out), arg ? mile_data(*arg) : NULL, l);
    else
      reduce_f32(op, mile_data(c), mile_data(*out), arg ? mile_data(*arg) : NULL, l);
  }
  mile_tensor_release(c);
  if (st != MILE_OK) {
    mile_tensor_release(*out), *out = NULL;
    if (arg) mile_tensor_release(*arg), *arg = NULL;
  }
  return st;
}

static mile_status record_reduce(mile_tensor **out, mile_reduce_op op, mile_tensor *a, int32_t dim, int32_t keepdim) {
  mile_node *node;
  mile_status st = mile_record(*out, reduce_names[op], reduce_backward, 1, &a, &node);
  if (st != MILE_OK) {
    mile_tensor_release(*out), *out = NULL;
    return st;
  }
  if (node) {
    node->iparam[0] = op, node->iparam[1] = dim, node->iparam[2] = keepdim;
    if (op != MILE_SUM && op != MILE_MEAN) {
      mile_node_save(node, a);
      if ((st = mile_node_save(node, *out)) != MILE_OK) mile_tensor_release(*out), *out = NULL;
    }
  }
  return st;
}

mile_status mile_reduce(mile_tensor **out, mile_reduce_op op, mile_tensor *a, int32_t dim, int32_t keepdim) {
  if ((unsigned)op >= MILE_REDUCE_COUNT) {
    *out = NULL;
    return mile_set_error(MILE_ERR_ARGUMENT, "reduce: unknown op %d", (int)op);
  }
  MILE_TRY(reduce_core(reduce_names[op], op, a, dim, keepdim, out, NULL));
  return record_reduce(out, op, a, dim, keepdim);
}

static mile_status extreme_dim(const char *fname, mile_reduce_op op, mile_tensor **values, mile_tensor **indices,
                               mile_tensor *a, int32_t dim, int32_t keepdim) {
  if (dim == MILE_ALL_DIMS) {
    *values = NULL;
    if (indices) *indices = NULL;
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: needs a dim", fname);
  }
  mile_tensor *idx = NULL;
  MILE_TRY(reduce_core(fname, op, a, dim, keepdim, values, &idx));
  if (indices) *indices = idx;
  else mile_tensor_release(idx);
  mile_status st = record_reduce(values, op, a, dim, keepdim);
  if (st != MILE_OK && indices) mile_tensor_release(*indices), *indices = NULL;
  return st;
}

mile_status mile_max_dim(mile_tensor **values, mile_tensor **indices, mile_tensor *a, int32_t dim, int32_t keepdim) {
  return extreme_dim("max", MILE_MAX, values, indices, a, dim, keepdim);
}
mile_status mile_min_dim(mile_tensor **values, mile_tensor **indices, mile_tensor *a, int32_t dim, int32_t keepdim) {
  return extreme_dim("min", MILE_MIN, values, indices, a, dim, keepdim);
}

static mile_status arg_extreme(const char *fname, mile_reduce_op op, mile_tensor **out, mile_tensor *a, int32_t dim,
                               int32_t keepdim) {
  mile_tensor *values;
  MILE_TRY(reduce_core(fname, op, a, dim, keepdim, &values, out));
  mile_tensor_release(values);
  return MILE_OK;
}

mile_status mile_argmax(mile_tensor **out, mile_tensor *a, int32_t dim, int32_t keepdim) {
  return arg_extreme("argmax", MILE_MAX, out, a, dim, keepdim);
}
mile_status mile_argmin(mile_tensor **out, mile_tensor *a, int32_t dim, int32_t keepdim) {
  return arg_extreme("argmin", MILE_MIN, out, a, dim, keepdim);
}

/* ---- softmax / log_softmax -------------------------------------------------- */

#define DEF_SOFTMAX(T, SFX)                                                                 \
  static void softmax_##SFX(const T *x, T *y, layout l, bool log_space) {                  \
    for (int64_t o = 0; o < l.outer; o++)                                                   \
      for (int64_t j = 0; j < l.inner; j++) {                                               \
        const T *row = x + o * l.n * l.inner + j;                                           \
        T *dst = y + o * l.n * l.inner + j;                                                 \
        T m = row[0];                                                                       \
        for (int64_t k = 1; k < l.n; k++) m = row[k * l.inner] > m ? row[k * l.inner] : m;  \
        if (isinf(m) && m < 0) m = 0; /* all -inf: keep the arithmetic finite */            \
        double sum = 0;                                                                     \
        for (int64_t k = 0; k < l.n; k++) sum += exp((double)row[k * l.inner] - (double)m); \
        double lse = (double)m + log(sum);                                                  \
        for (int64_t k = 0; k < l.n; k++) {                                                 \
          double v = (double)row[k * l.inner] - lse;                                        \
          dst[k * l.inner] = (T)(log_space ? v : exp(v));                                   \
        }                                                                                   \
      }                                                                                     \
  }
DEF_SOFTMAX(float, f32)
DEF_SOFTMAX(double, f64)

static mile_status softmax_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  int32_t dim = (int32_t)node->iparam[0];
  bool log_space = node->iparam[1];
  mile_tensor *y, *t1 = NULL, *t2 = NULL, *t3 = NULL;
  MILE_TRY(mile_node_saved(node, 0, &y));
  mile_status st;
  if (log_space) { /* g - exp(y) * sum(g) */
    st = mile_reduce(&t1, MILE_SUM, g, dim, 1);
    if (st == MILE_OK) st = mile_unary(&t2, MILE_EXP, y);
    if (st == MILE_OK) st = mile_binary(&t3, MILE_MUL, t2, t1);
    if (st == MILE_OK) st = mile_binary(&grads[0], MILE_SUB, g, t3);
  } else { /* y * (g - sum(g * y)) */
    st = mile_binary(&t1, MILE_MUL, g, y);
    if (st == MILE_OK) st = mile_reduce(&t2, MILE_SUM, t1, dim, 1);
    if (st == MILE_OK) st = mile_binary(&t3, MILE_SUB, g, t2);
    if (st == MILE_OK) st = mile_binary(&grads[0], MILE_MUL, y, t3);
  }
  mile_tensor_release(t1), mile_tensor_release(t2), mile_tensor_release(t3);
  return st;
}

static mile_status softmax_any(mile_tensor **out, mile_tensor *a, int32_t dim, bool log_space) {
  const char *fname = log_space ? "log_softmax" : "softmax";
  *out = NULL;
  MILE_TRY(mile_check_dim(fname, a, dim));
  mile_tensor *c;
  MILE_TRY(mile_contiguous(&c, a));
  mile_status st = mile_empty(out, (mile_dtype)a->dtype, a->ndim, a->shape);
  if (st == MILE_OK && mile_numel(a) > 0) { /* an empty dim has no row[0] to read */
    layout l = layout_of(a, dim);
    if (a->dtype == MILE_FLOAT64) softmax_f64(mile_data(c), mile_data(*out), l, log_space);
    else softmax_f32(mile_data(c), mile_data(*out), l, log_space);
  }
  mile_tensor_release(c);
  if (st != MILE_OK) return st;
  mile_node *node;
  st = mile_record(*out, fname, softmax_backward, 1, &a, &node);
  if (st != MILE_OK) {
    mile_tensor_release(*out), *out = NULL;
    return st;
  }
  if (node) {
    node->iparam[0] = dim, node->iparam[1] = log_space;
    if ((st = mile_node_save(node, *out)) != MILE_OK) mile_tensor_release(*out), *out = NULL;
  }
  return st;
}

mile_status mile_softmax(mile_tensor **out, mile_tensor *a, int32_t dim) { return softmax_any(out, a, dim, false); }
mile_status mile_log_softmax(mile_tensor **out, mile_tensor *a, int32_t dim) { return softmax_any(out, a, dim, true); }
