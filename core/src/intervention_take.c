/* intervention_take.c - the column of each row at the human's action (ln pi_h(a_h),
 * ln q(a_h)): action values checked, turned into a gather index, gathered; and the
 * finiteness check of continuous actions. */
#include <math.h>

#include "internal.h"

mile_status mile_take_actions(mile_tensor **out, mile_tensor *m, mile_tensor *a, mile_tensor *nu, int64_t offset,
                              int64_t width, int32_t check) {
  *out = NULL;
  const char *fname = "take";
  if (!m || !a) return mile_set_error(MILE_ERR_ARGUMENT, "%s: matrix and actions are required", fname);
  if (m->ndim != 2) return mile_set_error(MILE_ERR_SHAPE, "%s: expected a [B, n] matrix", fname);
  int64_t B = m->shape[0], n = m->shape[1];
  if (offset < 0 || offset >= n) return mile_set_error(MILE_ERR_ARGUMENT, "%s: offset out of range", fname);
  if (width < 1 || width > n - offset) return mile_set_error(MILE_ERR_ARGUMENT, "%s: width out of range", fname);
  if (!(a->ndim == 1 && a->shape[0] == B) && !(a->ndim == 2 && a->shape[0] == B && a->shape[1] == 1))
    return mile_set_error(MILE_ERR_SHAPE,
                          "human_action: expected %lld action values (one per sample, 0-based), got a tensor of "
                          "%d dims",
                          (long long)B, (int)a->ndim);
  if (nu && mile_numel(nu) != B)
    return mile_set_error(MILE_ERR_SHAPE, "nu: expected %lld values, got %lld", (long long)B,
                          (long long)mile_numel(nu));
  double *buf = malloc((size_t)(2 * B + 1) * sizeof *buf);
  if (!buf) return mile_err_nomem(fname);
  double *flags = buf + B;
  mile_status st = mile_to_doubles(a, buf);
  if (st == MILE_OK && nu) st = mile_to_doubles(nu, flags);
  for (int64_t b = 0; st == MILE_OK && b < B; b++) {
    if (nu && flags[b] == 0) {
      buf[b] = (double)offset;
      continue;
    }
    double v = buf[b];
    if (check && !(v >= 0 && v < (double)width && v == floor(v)))
      st = mile_set_error(MILE_ERR_ARGUMENT,
                          "human_action: sample %lld has action value %g, expected an integer in 0..%lld",
                          (long long)b + 1, v, (long long)width - 1);
    buf[b] = v + (double)offset;
  }
  int64_t shape[2] = {B, 1};
  mile_tensor *idx = NULL, *g = NULL;
  if (st == MILE_OK) st = mile_from_data(&idx, (mile_dtype)m->dtype, 2, shape, buf, MILE_FLOAT64);
  free(buf);
  if (st == MILE_OK) st = mile_gather(&g, m, 1, idx);
  if (st == MILE_OK) st = mile_view(out, g, 1, &B);
  mile_tensor_release(idx);
  mile_tensor_release(g);
  return st;
}

mile_status mile_check_finite_actions(const mile_tensor *a) {
  if (!a) return mile_set_error(MILE_ERR_ARGUMENT, "human_action is missing");
  int64_t n = mile_numel(a), D = a->ndim >= 2 ? a->shape[a->ndim - 1] : 1;
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (!v) return mile_err_nomem("human_action");
  mile_status st = mile_to_doubles(a, v);
  for (int64_t i = 0; st == MILE_OK && i < n; i++)
    if (!isfinite(v[i]))
      st = mile_set_error(MILE_ERR_ARGUMENT,
                          "human_action must be finite on intervention steps: sample %lld, dimension %lld",
                          (long long)(i / D + 1), (long long)(i % D + 1));
  free(v);
  return st;
}
