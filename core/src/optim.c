/* optim.c - fused optimiser updates (Adam/AdamW, SGD) and gradient-norm clipping.
 *
 * One pass over each parameter, no allocation: the scalar coefficients are computed
 * once in double, then a plain loop per dtype does the elementwise work (written so
 * that the compiler vectorises it). The math mirrors torch.optim's single-tensor path. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* ---- argument checks ---------------------------------------------------------- */

/* t must exist, be contiguous and match param's shape and dtype. */
static mile_status check_like(const char *fname, const char *what, const mile_tensor *param, const mile_tensor *t) {
  char a[96], b[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is NULL", fname, what);
  if (t->dtype != param->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "%s: %s is %s, the parameter %s", fname, what,
                          mile_dtype_name((mile_dtype)t->dtype), mile_dtype_name((mile_dtype)param->dtype));
  if (!mile_same_shape(t, param))
    return mile_set_error(MILE_ERR_SHAPE, "%s: %s has shape %s, the parameter %s", fname, what,
                          mile_shape_str(t, a, sizeof a), mile_shape_str(param, b, sizeof b));
  if (!mile_is_contiguous(t)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is not contiguous", fname, what);
  return MILE_OK;
}

/* The tensors of one update may not share storage (an alias would be read after
 * being written within the same element). */
static mile_status check_distinct(const char *fname, int32_t n, const mile_tensor *const *ts) {
  for (int32_t i = 0; i < n; i++)
    for (int32_t j = i + 1; j < n; j++)
      if (ts[i] && ts[j] && ts[i]->storage == ts[j]->storage)
        return mile_set_error(MILE_ERR_ARGUMENT, "%s: the parameter, its gradient and its state must not share storage",
                              fname);
  return MILE_OK;
}

/* ---- Adam / AdamW ------------------------------------------------------------- */

typedef struct adam_coef {
  double decay;        /* param *= decay first (AdamW); 1 otherwise */
  double coupled_wd;   /* g += coupled_wd * param (Adam's L2 term); 0 for AdamW */
  double beta1, beta2;
  double step_size;    /* lr / (1 - beta1^step) */
  double bc2_sqrt;     /* sqrt(1 - beta2^step) */
  double eps;
} adam_coef;

/* One Adam update over elements [i0, i1); the elements are independent, so the loop is
 * split over threads (mile_parallel_for) from MILE_PASS_PARALLEL elements on. */
typedef struct adam_args {
  void *p, *m, *v;
  const void *g;
  const adam_coef *c;
} adam_args;

#define DEF_ADAM_LOOP(T, SFX, SQRT)                                                                                    \
  static void adam_range_##SFX(int64_t i0, int64_t i1, int part, void *ctx) {                                          \
    const adam_args *k = ctx;                                                                                          \
    const adam_coef *c = k->c;                                                                                         \
    T *restrict p = k->p, *restrict m = k->m, *restrict v = k->v;                                                      \
    const T *restrict g = k->g;                                                                                        \
    const T decay = (T)c->decay, wd = (T)c->coupled_wd, b1 = (T)c->beta1, b2 = (T)c->beta2;                            \
    const T omb1 = (T)(1 - c->beta1), omb2 = (T)(1 - c->beta2), step_size = (T)c->step_size;                           \
    const T bc2_sqrt = (T)c->bc2_sqrt, eps = (T)c->eps;                                                                \
    for (int64_t i = i0; i < i1; i++) {                                                                                \
      T pi = p[i], gi = g[i] + wd * pi;                                                                                \
      pi *= decay;                                                                                                     \
      T mi = b1 * m[i] + omb1 * gi;                                                                                    \
      T vi = b2 * v[i] + omb2 * gi * gi;                                                                               \
      m[i] = mi, v[i] = vi;                                                                                            \
      p[i] = pi - step_size * mi / (SQRT(vi) / bc2_sqrt + eps);                                                        \
    }                                                                                                                  \
  }                                                                                                                    \
  static void adam_loop_##SFX(int64_t n, T *restrict p, const T *restrict g, T *restrict m, T *restrict v,             \
                              const adam_coef *c) {                                                                    \
    adam_args k = {p, m, v, g, c};                                                                                     \
    mile_parallel_for(n, mile_pass_threads(n), adam_range_##SFX, &k);                                                  \
  }
DEF_ADAM_LOOP(float, f32, sqrtf)
DEF_ADAM_LOOP(double, f64, sqrt)

mile_status mile_adam_step(mile_tensor *param, const mile_tensor *grad, mile_tensor *exp_avg, mile_tensor *exp_avg_sq,
                           double lr, double beta1, double beta2, double eps, double weight_decay, int32_t decoupled,
                           int64_t step) {
  const char *fname = decoupled ? "adamw_step" : "adam_step";
  if (!param) return mile_set_error(MILE_ERR_ARGUMENT, "%s: the parameter is NULL", fname);
  if (!mile_is_contiguous(param)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: the parameter is not contiguous", fname);
  MILE_TRY(check_like(fname, "the gradient", param, grad));
  MILE_TRY(check_like(fname, "exp_avg", param, exp_avg));
  MILE_TRY(check_like(fname, "exp_avg_sq", param, exp_avg_sq));
  const mile_tensor *all[4] = {param, grad, exp_avg, exp_avg_sq};
  MILE_TRY(check_distinct(fname, 4, all));
  if (step < 1) return mile_set_error(MILE_ERR_ARGUMENT, "%s: step %lld (steps count from 1)", fname, (long long)step);
  if (!(lr >= 0) || !(eps >= 0) || !(weight_decay >= 0))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: lr %g, eps %g and weight_decay %g must be >= 0", fname, lr, eps,
                          weight_decay);
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: betas (%g, %g) must lie in [0, 1)", fname, beta1, beta2);

  adam_coef c = {
      .decay = decoupled ? 1 - lr * weight_decay : 1,
      .coupled_wd = decoupled ? 0 : weight_decay,
      .beta1 = beta1,
      .beta2 = beta2,
      .step_size = lr / (1 - pow(beta1, (double)step)),
      .bc2_sqrt = sqrt(1 - pow(beta2, (double)step)),
      .eps = eps,
  };
  int64_t n = mile_numel(param);
  if (param->dtype == MILE_FLOAT64)
    adam_loop_f64(n, mile_data(param), mile_data(grad), mile_data(exp_avg), mile_data(exp_avg_sq), &c);
  else
    adam_loop_f32(n, mile_data(param), mile_data(grad), mile_data(exp_avg), mile_data(exp_avg_sq), &c);
  mile_bump_version(param);
  mile_bump_version(exp_avg);
  mile_bump_version(exp_avg_sq);
  return MILE_OK;
}

/* ---- SGD ------------------------------------------------------------------------ */

typedef struct sgd_coef {
  double lr, wd, momentum, blend; /* blend: 1 - dampening, or 1 on the first step */
  double keep;                    /* momentum, or 0 on the first step (buf = g) */
  int nesterov;
} sgd_coef;

#define DEF_SGD_LOOPS(T, SFX)                                                                          \
  static void sgd_plain_##SFX(int64_t n, T *restrict p, const T *restrict g, const sgd_coef *c) {     \
    const T lr = (T)c->lr, wd = (T)c->wd;                                                              \
    for (int64_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);                                  \
  }                                                                                                    \
  static void sgd_momentum_##SFX(int64_t n, T *restrict p, const T *restrict g, T *restrict buf,      \
                                 const sgd_coef *c) {                                                  \
    const T lr = (T)c->lr, wd = (T)c->wd, mom = (T)c->momentum, keep = (T)c->keep, blend = (T)c->blend; \
    const int nesterov = c->nesterov;                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                                  \
      T gi = g[i] + wd * p[i];                                                                         \
      /* keep == 0 on the first step: buf's old contents (maybe NaN) must not leak in */              \
      T bi = keep == 0 ? blend * gi : keep * buf[i] + blend * gi;                                      \
      buf[i] = bi;                                                                                     \
      p[i] -= lr * (nesterov ? gi + mom * bi : bi);                                                    \
    }                                                                                                  \
  }
DEF_SGD_LOOPS(float, f32)
DEF_SGD_LOOPS(double, f64)

mile_status mile_sgd_step(mile_tensor *param, const mile_tensor *grad, mile_tensor *momentum_buf, double lr,
                          double momentum, double dampening, double weight_decay, int32_t nesterov, int32_t first) {
  const char *fname = "sgd_step";
  if (!param) return mile_set_error(MILE_ERR_ARGUMENT, "%s: the parameter is NULL", fname);
  if (!mile_is_contiguous(param)) return mile_set_error(MILE_ERR_ARGUMENT, "%s: the parameter is not contiguous", fname);
  MILE_TRY(check_like(fname, "the gradient", param, grad));
  if (momentum != 0) MILE_TRY(check_like(fname, "the momentum buffer", param, momentum_buf));
  const mile_tensor *all[3] = {param, grad, momentum != 0 ? momentum_buf : NULL};
  MILE_TRY(check_distinct(fname, 3, all));
  if (!(lr >= 0) || !(momentum >= 0) || !(weight_decay >= 0))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: lr %g, momentum %g and weight_decay %g must be >= 0", fname, lr,
                          momentum, weight_decay);
  if (nesterov && (momentum <= 0 || dampening != 0))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: nesterov needs momentum > 0 and dampening 0", fname);

  sgd_coef c = {
      .lr = lr,
      .wd = weight_decay,
      .momentum = momentum,
      .blend = first ? 1 : 1 - dampening,
      .keep = first ? 0 : momentum,
      .nesterov = nesterov != 0,
  };
  int64_t n = mile_numel(param);
  bool f64 = param->dtype == MILE_FLOAT64;
  if (momentum == 0) {
    if (f64) sgd_plain_f64(n, mile_data(param), mile_data(grad), &c);
    else sgd_plain_f32(n, mile_data(param), mile_data(grad), &c);
  } else {
    if (f64) sgd_momentum_f64(n, mile_data(param), mile_data(grad), mile_data(momentum_buf), &c);
    else sgd_momentum_f32(n, mile_data(param), mile_data(grad), mile_data(momentum_buf), &c);
    mile_bump_version(momentum_buf);
  }
  mile_bump_version(param);
  return MILE_OK;
}

/* ---- gradient norms ----------------------------------------------------------- */

typedef struct norm_acc {
  double *acc;   /* running sum of |x|^p, or running max for p = inf */
  double p;
  int32_t dtype;
} norm_acc;

/* mile_loop_run callbacks over one operand: accumulate |x|^p (or max |x|) into *acc */
#define DEF_NORM_LOOP(T, SFX)                                                              \
  static void norm_loop_##SFX(int64_t n, char **ptr, const int64_t *s, const void *ctx) {  \
    const norm_acc *a = ctx;                                                               \
    const T *x = (const T *)ptr[0];                                                        \
    const int64_t st = s[0];                                                               \
    double acc = *a->acc;                                                                  \
    if (a->p == 2) {                                                                       \
      for (int64_t i = 0; i < n; i++) acc += (double)x[i * st] * (double)x[i * st];        \
    } else if (isinf(a->p)) {                                                              \
      for (int64_t i = 0; i < n; i++) {                                                    \
        double v = fabs((double)x[i * st]);                                                \
        if (v > acc || isnan(v)) acc = v;                                                  \
      }                                                                                    \
    } else {                                                                               \
      for (int64_t i = 0; i < n; i++) acc += pow(fabs((double)x[i * st]), a->p);           \
    }                                                                                      \
    *a->acc = acc;                                                                         \
  }
DEF_NORM_LOOP(float, f32)
DEF_NORM_LOOP(double, f64)

mile_status mile_grad_norm(double *total_norm, int32_t n, mile_tensor *const *grads, double norm_type) {
  if (!total_norm || (n > 0 && !grads)) return mile_set_error(MILE_ERR_ARGUMENT, "grad_norm: NULL argument");
  if (!(norm_type >= 1)) return mile_set_error(MILE_ERR_ARGUMENT, "grad_norm: norm_type %g (needs >= 1)", norm_type);
  double acc = 0;
  for (int32_t i = 0; i < n; i++) {
    const mile_tensor *g = grads[i];
    if (!g) continue;
    norm_acc a = {&acc, norm_type, g->dtype};
    const mile_tensor *ops[1] = {g};
    mile_loop_run(1, ops, g->ndim, g->shape, g->dtype == MILE_FLOAT64 ? norm_loop_f64 : norm_loop_f32, &a);
  }
  if (isinf(norm_type)) *total_norm = acc;
  else if (norm_type == 2) *total_norm = sqrt(acc);
  else *total_norm = pow(acc, 1 / norm_type);
  return MILE_OK;
}

static void scale_loop(int64_t n, char **ptr, const int64_t *s, const void *ctx) {
  const norm_acc *a = ctx; /* p holds the factor here */
  if (a->dtype == MILE_FLOAT64) {
    double *x = (double *)ptr[0], f = a->p;
    for (int64_t i = 0; i < n; i++) x[i * s[0]] *= f;
  } else {
    float *x = (float *)ptr[0], f = (float)a->p;
    for (int64_t i = 0; i < n; i++) x[i * s[0]] *= f;
  }
}

mile_status mile_clip_grad_norm(double *total_norm, int32_t n, mile_tensor *const *grads, double max_norm,
                                double norm_type) {
  if (!(max_norm >= 0)) return mile_set_error(MILE_ERR_ARGUMENT, "clip_grad_norm: max_norm %g (needs >= 0)", max_norm);
  double norm;
  MILE_TRY(mile_grad_norm(&norm, n, grads, norm_type));
  if (total_norm) *total_norm = norm;
  if (!isfinite(norm)) return MILE_OK; /* reported; scaling by NaN would only spread it */
  double factor = max_norm / (norm + 1e-6);
  if (factor >= 1) return MILE_OK;
  for (int32_t i = 0; i < n; i++) {
    mile_tensor *g = grads[i];
    if (!g) continue;
    for (int32_t d = 0; d < g->ndim; d++)
      if (g->stride[d] == 0 && g->shape[d] > 1)
        return mile_set_error(MILE_ERR_ARGUMENT, "clip_grad_norm: gradient %d is an expanded view", (int)i);
  }
  for (int32_t i = 0; i < n; i++) {
    mile_tensor *g = grads[i];
    if (!g) continue;
    norm_acc a = {NULL, factor, g->dtype};
    const mile_tensor *ops[1] = {g};
    mile_loop_run(1, ops, g->ndim, g->shape, scale_loop, &a);
    mile_bump_version(g);
  }
  return MILE_OK;
}
