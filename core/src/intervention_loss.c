/* intervention_loss.c - the three loss variants of DESIGN.md section 1 as one fused
 * node over per-sample quantities: out = (loss, j1, j2).
 *
 * With n = B samples, n1 = sum_b nu_b, and the per-sample terms
 *   ce_b  = -[nu_b ln p_b + (1 - nu_b) ln(1 - p_b)]        intervention cross-entropy
 *   nll_b = nu_b (-ln pi_h(a_h,b))                         human-action NLL (nu = 1 only)
 *   jq_b  = nu_b (-ln q(a_h,b)) + (1 - nu_b)(-ln(1 - p_b))
 * the variants are
 *   paper:     j1 = sum ce / n,  j2 = sum nll / n1 (0 if n1 = 0),  loss = lambda j1 + (1-lambda) j2
 *   joint:     j1 = sum jq / n,  j2 = sum nll / n,                 loss = j1 + j2
 *   reference: j1 = sum ce / n,  j2 = sum nll / n,                 loss = j1 + j2
 * (`reference` is -ln(pi_h(a_h) p) for nu = 1 and -ln(1-p) for nu = 0: the NLL of the
 * categorical [pi_h(a) p for each a, 1 - p] of the authors' public code.)
 * Each output is linear in the inputs, so the backward is a weighted copy of the
 * incoming (g_loss, g_j1, g_j2): e.g. for paper
 *   d/d ln p_b = -(lambda g_loss + g_j1) nu_b / n,   d/d ln pi_b = -((1-lambda) g_loss + g_j2) nu_b / n1.
 * Terms of samples whose flag excludes them are skipped, not multiplied by 0, so an
 * unused -inf (say ln pi_h of an action the policy rules out) cannot become NaN. */
#include <string.h>

#include "iv_internal.h"

static const char *const FNAME = "intervention_loss";
static const char *const LOSS_NAMES[MILE_IV_LOSS_COUNT] = {"paper", "joint", "reference"};

const char *mile_iv_loss_name(mile_iv_loss variant) {
  return (unsigned)variant < MILE_IV_LOSS_COUNT ? LOSS_NAMES[variant] : "unknown";
}

/* Per-sample coefficients: out = sum_b (cp_b ln p_b + cn_b ln(1-p_b) + cpi_b ln pi_b + cq_b ln q_b)
 * for each of the three outputs o (loss, j1, j2). */
typedef struct coefs { double p[3], n[3], pi[3], q[3]; } coefs;

static coefs sample_coefs(mile_iv_loss variant, double lambda, bool nu, double n, double n1) {
  coefs k;
  memset(&k, 0, sizeof k);
  double inv_n = 1.0 / n, inv_n1 = n1 > 0 ? 1.0 / n1 : 0.0;
  switch (variant) {
  case MILE_IV_PAPER:
    if (nu) k.p[1] = -inv_n, k.pi[2] = -inv_n1;
    else k.n[1] = -inv_n;
    k.p[0] = lambda * k.p[1], k.n[0] = lambda * k.n[1], k.pi[0] = (1 - lambda) * k.pi[2];
    break;
  case MILE_IV_JOINT:
    if (nu) k.q[1] = -inv_n, k.pi[2] = -inv_n;
    else k.n[1] = -inv_n;
    k.q[0] = k.q[1], k.n[0] = k.n[1], k.pi[0] = k.pi[2];
    break;
  default: /* reference */
    if (nu) k.p[1] = -inv_n, k.pi[2] = -inv_n;
    else k.n[1] = -inv_n;
    k.p[0] = k.p[1], k.n[0] = k.n[1], k.pi[0] = k.pi[2];
    break;
  }
  return k;
}

typedef struct loss_inputs {
  double *lp, *l1m, *lpi, *lq, *nu; /* one buffer of 5B doubles, lq zero when absent */
  double n1;
} loss_inputs;

static mile_status read_inputs(mile_tensor *const *t, int64_t B, loss_inputs *in) {
  double *buf = calloc((size_t)(5 * B > 0 ? 5 * B : 1), sizeof *buf);
  if (!buf) return mile_err_nomem(FNAME);
  in->lp = buf, in->l1m = buf + B, in->lpi = buf + 2 * B, in->lq = buf + 3 * B, in->nu = buf + 4 * B;
  double *dst[5] = {in->lp, in->l1m, in->lpi, in->lq, in->nu};
  mile_status st = MILE_OK;
  for (int i = 0; i < 5 && st == MILE_OK; i++)
    if (t[i]) st = mile_to_doubles(t[i], dst[i]);
  in->n1 = 0;
  for (int64_t b = 0; b < B && st == MILE_OK; b++) {
    double v = in->nu[b];
    if (v != 0 && v != 1) /* 2 or NaN is not "an intervention" */
      st = mile_set_error(MILE_ERR_ARGUMENT, "%s: nu must be 0 or 1, got %.17g at sample %lld (0-based)", FNAME, v,
                          (long long)b);
    in->n1 += v != 0;
  }
  if (st != MILE_OK) free(buf), in->lp = NULL;
  return st;
}

static mile_status loss_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  /* the outputs are linear in the inputs: only nu (and n1) are needed */
  mile_iv_loss variant = (mile_iv_loss)node->iparam[0];
  int64_t B = node->inputs[0]->shape[0];
  mile_dtype dtype = (mile_dtype)node->inputs[0]->dtype;
  double gout[3];
  MILE_TRY(mile_to_doubles(g, gout));
  double *buf = calloc((size_t)(5 * B > 0 ? 5 * B : 1), sizeof *buf); /* calloc(0) may be NULL */
  if (!buf) return mile_err_nomem(FNAME);
  double *nu = buf + 4 * B, n1 = 0;
  mile_status st = mile_to_doubles(node->inputs[4], nu);
  for (int64_t b = 0; b < B; b++) n1 += nu[b] != 0;
  for (int64_t b = 0; st == MILE_OK && b < B; b++) {
    coefs k = sample_coefs(variant, node->dparam[0], nu[b] != 0, (double)B, n1);
    for (int o = 0; o < 3; o++) {
      buf[b] += gout[o] * k.p[o];
      buf[B + b] += gout[o] * k.n[o];
      buf[2 * B + b] += gout[o] * k.pi[o];
      buf[3 * B + b] += gout[o] * k.q[o];
    }
  }
  for (int i = 0; st == MILE_OK && i < 4; i++)
    if (node->needs[i]) st = mile_from_data(&grads[i], dtype, 1, &B, buf + i * B, MILE_FLOAT64);
  free(buf);
  return st;
}

static mile_status check_vector(const char *what, const mile_tensor *t, const mile_tensor *like) {
  char s[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "%s: %s is missing", FNAME, what);
  if (t->ndim != 1 || t->shape[0] != like->shape[0])
    return mile_set_error(MILE_ERR_SHAPE, "%s: %s has shape %s, expected {%lld} (one per sample)", FNAME, what,
                          mile_shape_str(t, s, sizeof s), (long long)like->shape[0]);
  if (t->dtype != like->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "%s: %s is %s but log_p is %s", FNAME, what,
                          mile_dtype_name((mile_dtype)t->dtype), mile_dtype_name((mile_dtype)like->dtype));
  return MILE_OK;
}

mile_status mile_intervention_loss(mile_tensor **out, mile_iv_loss variant, double lambda, mile_tensor *log_p,
                                   mile_tensor *log1m_p, mile_tensor *log_pi, mile_tensor *log_q, mile_tensor *nu) {
  *out = NULL;
  char s[96];
  if ((unsigned)variant >= MILE_IV_LOSS_COUNT)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: unknown variant %d", FNAME, (int)variant);
  if (!log_p) return mile_set_error(MILE_ERR_ARGUMENT, "%s: log_p is missing", FNAME);
  if (log_p->ndim != 1)
    return mile_set_error(MILE_ERR_SHAPE, "%s: log_p has shape %s, expected {B}", FNAME,
                          mile_shape_str(log_p, s, sizeof s));
  if (log_p->shape[0] < 1) return mile_set_error(MILE_ERR_SHAPE, "%s: the batch is empty", FNAME);
  if (!(lambda >= 0 && lambda <= 1)) /* NaN fails too */
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: lambda must be in [0, 1], got %.17g", FNAME, lambda);
  MILE_TRY(check_vector("log1m_p", log1m_p, log_p));
  MILE_TRY(check_vector("log_pi", log_pi, log_p));
  if (variant == MILE_IV_JOINT) MILE_TRY(check_vector("log_q", log_q, log_p));
  else log_q = NULL;
  MILE_TRY(check_vector("nu", nu, log_p));
  int64_t B = log_p->shape[0];
  mile_tensor *inputs[5] = {log_p, log1m_p, log_pi, log_q, nu};
  loss_inputs in = {0};
  MILE_TRY(read_inputs(inputs, B, &in));
  double acc[3] = {0, 0, 0};
  for (int64_t b = 0; b < B; b++) {
    coefs k = sample_coefs(variant, lambda, in.nu[b] != 0, (double)B, in.n1);
    for (int o = 0; o < 3; o++) { /* skip zero coefficients: 0 * -inf would be NaN */
      if (k.p[o] != 0) acc[o] += k.p[o] * in.lp[b];
      if (k.n[o] != 0) acc[o] += k.n[o] * in.l1m[b];
      if (k.pi[o] != 0) acc[o] += k.pi[o] * in.lpi[b];
      if (k.q[o] != 0) acc[o] += k.q[o] * in.lq[b];
    }
  }
  free(in.lp);
  int64_t three = 3;
  MILE_TRY(mile_from_data(out, (mile_dtype)log_p->dtype, 1, &three, acc, MILE_FLOAT64));
  mile_node *node = NULL;
  /* a missing log_q is a NULL input: mile_record and backward accept those */
  mile_status st = mile_record(*out, FNAME, loss_backward, 5, inputs, &node);
  if (node) {
    node->iparam[0] = variant;
    node->dparam[0] = lambda;
    node->needs[4] = 0; /* nu is data */
  }
  if (st != MILE_OK) mile_tensor_release(*out), *out = NULL;
  return st;
}
