/* call.c - one dispatcher for every recordable op (mile/tape.h): bindings run their
 * ops through it, and a tape replays through it, so recording and replay cannot
 * drift apart. */
#include <string.h>

#include "internal.h"
#include "tape_internal.h"

static const char *const op_names[MILE_OP_COUNT] = {"unary",
                                                    "binary",
                                                    "binary_scalar",
                                                    "clamp",
                                                    "where",
                                                    "reduce",
                                                    "max",
                                                    "min",
                                                    "argmax",
                                                    "argmin",
                                                    "softmax",
                                                    "log_softmax",
                                                    "gather",
                                                    "index_select",
                                                    "cat",
                                                    "matmul",
                                                    "linear",
                                                    "transpose",
                                                    "permute",
                                                    "narrow",
                                                    "select",
                                                    "view",
                                                    "reshape",
                                                    "expand",
                                                    "unsqueeze",
                                                    "squeeze",
                                                    "contiguous",
                                                    "clone",
                                                    "to",
                                                    "detach",
                                                    "fill_",
                                                    "copy_",
                                                    "requires_grad",
                                                    "zero_grad",
                                                    "set_grad",
                                                    "grad",
                                                    "backward",
                                                    "set_grad_enabled",
                                                    "probit_discrete",
                                                    "probit_gaussian",
                                                    "intervention_loss",
                                                    "take",
                                                    "check_actions",
                                                    "adam",
                                                    "sgd"};

const char *mile_op_name(mile_op op) { return op >= 0 && op < MILE_OP_COUNT ? op_names[op] : "unknown op"; }

/* Inputs each op needs (-1: any count >= 1, checked per op); which may be NULL. */
static int32_t op_arity(mile_op op) {
  switch (op) {
  case MILE_OP_BINARY:
  case MILE_OP_GATHER:
  case MILE_OP_INDEX_SELECT:
  case MILE_OP_MATMUL:
  case MILE_OP_COPY:
  case MILE_OP_SET_GRAD:
  case MILE_OP_BACKWARD:
    return 2;
  case MILE_OP_WHERE:
  case MILE_OP_LINEAR:
  case MILE_OP_TAKE_ACTIONS:
    return 3;
  case MILE_OP_PROBIT_DISCRETE:
    return 4;
  case MILE_OP_IV_LOSS:
    return 5;
  case MILE_OP_PROBIT_GAUSSIAN:
    return 6;
  case MILE_OP_GRAD_MODE:
    return 0;
  case MILE_OP_CAT:
  case MILE_OP_ADAM:
  case MILE_OP_SGD:
    return -1;
  default:
    return 1;
  }
}

static bool optional_input(mile_op op, int32_t k) {
  return (op == MILE_OP_LINEAR && k == 2) || (op == MILE_OP_SET_GRAD && k == 1) || (op == MILE_OP_BACKWARD && k == 1) ||
         (op == MILE_OP_IV_LOSS && k == 3) || (op == MILE_OP_TAKE_ACTIONS && k == 2);
}

bool mile_op_in_place(mile_op op) {
  return op == MILE_OP_FILL || op == MILE_OP_COPY || op == MILE_OP_ADAM || op == MILE_OP_SGD;
}

static mile_status check_call(const mile_call *c) {
  if (c->op < 0 || c->op >= MILE_OP_COUNT) return mile_set_error(MILE_ERR_ARGUMENT, "call: unknown op %d", (int)c->op);
  const char *name = op_names[c->op];
  int32_t arity = op_arity(c->op);
  if (arity >= 0 && c->n_in != arity)
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %d inputs given, %d expected", name, (int)c->n_in, (int)arity);
  if (arity < 0 && c->n_in < 1) return mile_set_error(MILE_ERR_ARGUMENT, "%s: needs at least one input", name);
  for (int32_t k = 0; k < c->n_in; k++)
    if (!c->in[k] && !optional_input(c->op, k))
      return mile_set_error(MILE_ERR_ARGUMENT, "%s: input %d is missing", name, (int)k + 1);
  if (c->op == MILE_OP_ADAM && (c->n_in % 3 != 0 || c->n_steps != c->n_in / 3 || !c->steps))
    return mile_set_error(MILE_ERR_ARGUMENT, "adam: needs params, exp_avgs and exp_avg_sqs with one step count each");
  if (c->op == MILE_OP_SGD) {
    int32_t n = c->i[1] ? c->n_in / 2 : c->n_in;
    if ((c->i[1] && c->n_in % 2 != 0) || c->n_steps != n || !c->steps)
      return mile_set_error(MILE_ERR_ARGUMENT, "sgd: needs params (and buffers) with one step count each");
  }
  if ((c->op == MILE_OP_VIEW || c->op == MILE_OP_RESHAPE || c->op == MILE_OP_EXPAND) &&
      (c->i[0] < 0 || c->i[0] > MILE_MAX_DIMS))
    return mile_set_error(MILE_ERR_ARGUMENT, "%s: %lld dims", name, (long long)c->i[0]);
  return MILE_OK;
}

/* The parameter's gradient as a contiguous tensor (a new reference). */
static mile_status contiguous_grad(mile_tensor **g, mile_tensor *p) {
  if (mile_is_contiguous(p->grad)) {
    *g = mile_tensor_retain(p->grad);
    return MILE_OK;
  }
  return mile_contiguous(g, p->grad);
}

static mile_status run_adam(mile_call *c) {
  int32_t n = c->n_in / 3;
  mile_tensor *const *p = c->in, *const *m = c->in + n, *const *v = c->in + 2 * n;
  for (int32_t k = 0; k < n; k++) {
    if (!p[k]->grad) continue; /* no gradient: skipped, its count stays (as torch.optim) */
    mile_tensor *g;
    MILE_TRY(contiguous_grad(&g, p[k]));
    mile_status st = mile_adam_step(p[k], g, m[k], v[k], c->d[0], c->d[1], c->d[2], c->d[3], c->d[4], (int32_t)c->i[0],
                                    c->steps[k] + 1);
    mile_tensor_release(g);
    MILE_TRY(st);
    c->steps[k]++;
    c->updated++;
  }
  return MILE_OK;
}

static mile_status run_sgd(mile_call *c) {
  int32_t n = c->n_steps;
  for (int32_t k = 0; k < n; k++) {
    mile_tensor *p = c->in[k], *buf = c->i[1] ? c->in[n + k] : NULL;
    if (!p->grad) continue;
    mile_tensor *g;
    MILE_TRY(contiguous_grad(&g, p));
    mile_status st = mile_sgd_step(p, g, buf, c->d[0], c->d[1], c->d[2], c->d[3], (int32_t)c->i[0], c->steps[k] == 0);
    mile_tensor_release(g);
    MILE_TRY(st);
    c->steps[k]++;
    c->updated++;
  }
  return MILE_OK;
}

static mile_status run_dims(mile_call *c, mile_tensor *t) {
  int32_t nd = (int32_t)c->i[0];
  int64_t shape[MILE_MAX_DIMS];
  for (int32_t k = 0; k < nd; k++)
    shape[k] = c->i[1 + k];
  if (c->op == MILE_OP_VIEW) return mile_view(&c->out[0], t, nd, shape);
  if (c->op == MILE_OP_RESHAPE) return mile_reshape(&c->out[0], t, nd, shape);
  return mile_expand(&c->out[0], t, nd, shape);
}

mile_status mile_call_exec(mile_call *c) {
  c->out[0] = c->out[1] = NULL;
  c->n_out = 1;
  c->updated = 0;
  MILE_TRY(check_call(c));
  mile_tensor *const *in = c->in;
  mile_tensor *a = c->n_in > 0 ? in[0] : NULL;
  const int64_t *i = c->i;
  const double *d = c->d;
  mile_tensor **o = c->out;
  mile_status st;
  switch (c->op) {
  case MILE_OP_UNARY:
    st = mile_unary(o, (mile_unary_op)i[0], a);
    break;
  case MILE_OP_BINARY:
    st = mile_binary(o, (mile_binary_op)i[0], a, in[1]);
    break;
  case MILE_OP_BINARY_SCALAR:
    st = mile_binary_scalar(o, (mile_binary_op)i[0], a, d[0], (int32_t)i[1]);
    break;
  case MILE_OP_CLAMP:
    st = mile_clamp(o, a, d[0], d[1]);
    break;
  case MILE_OP_WHERE:
    st = mile_where(o, a, in[1], in[2]);
    break;
  case MILE_OP_REDUCE:
    st = mile_reduce(o, (mile_reduce_op)i[0], a, (int32_t)i[1], (int32_t)i[2]);
    break;
  case MILE_OP_MAX_DIM:
  case MILE_OP_MIN_DIM:
    c->n_out = 2;
    st = c->op == MILE_OP_MAX_DIM ? mile_max_dim(&o[0], &o[1], a, (int32_t)i[0], (int32_t)i[1])
                                  : mile_min_dim(&o[0], &o[1], a, (int32_t)i[0], (int32_t)i[1]);
    break;
  case MILE_OP_ARGMAX:
    st = mile_argmax(o, a, (int32_t)i[0], (int32_t)i[1]);
    break;
  case MILE_OP_ARGMIN:
    st = mile_argmin(o, a, (int32_t)i[0], (int32_t)i[1]);
    break;
  case MILE_OP_SOFTMAX:
    st = mile_softmax(o, a, (int32_t)i[0]);
    break;
  case MILE_OP_LOG_SOFTMAX:
    st = mile_log_softmax(o, a, (int32_t)i[0]);
    break;
  case MILE_OP_GATHER:
    st = mile_gather(o, a, (int32_t)i[0], in[1]);
    break;
  case MILE_OP_INDEX_SELECT:
    st = mile_index_select(o, a, (int32_t)i[0], in[1]);
    break;
  case MILE_OP_CAT:
    st = mile_cat(o, c->n_in, in, (int32_t)i[0]);
    break;
  case MILE_OP_MATMUL:
    st = mile_matmul(o, a, in[1]);
    break;
  case MILE_OP_LINEAR:
    st = mile_linear_act(o, a, in[1], in[2], (mile_activation)i[0]);
    break;
  case MILE_OP_TRANSPOSE:
    st = mile_transpose(o, a, (int32_t)i[0], (int32_t)i[1]);
    break;
  case MILE_OP_PERMUTE: {
    int32_t dims[MILE_MAX_DIMS];
    for (int32_t k = 0; k < a->ndim; k++)
      dims[k] = (int32_t)i[k];
    st = mile_permute(o, a, dims);
    break;
  }
  case MILE_OP_NARROW:
    st = mile_narrow(o, a, (int32_t)i[0], i[1], i[2]);
    break;
  case MILE_OP_SELECT:
    st = mile_select(o, a, (int32_t)i[0], i[1]);
    break;
  case MILE_OP_VIEW:
  case MILE_OP_RESHAPE:
  case MILE_OP_EXPAND:
    st = run_dims(c, a);
    break;
  case MILE_OP_UNSQUEEZE:
    st = mile_unsqueeze(o, a, (int32_t)i[0]);
    break;
  case MILE_OP_SQUEEZE:
    st = mile_squeeze(o, a, (int32_t)i[0]);
    break;
  case MILE_OP_CONTIGUOUS:
    st = mile_contiguous(o, a);
    break;
  case MILE_OP_CLONE:
    st = mile_clone(o, a);
    break;
  case MILE_OP_TO_DTYPE:
    st = mile_to_dtype(o, a, (mile_dtype)i[0]);
    break;
  case MILE_OP_DETACH:
    st = mile_detach(o, a);
    break;
  case MILE_OP_FILL:
    c->n_out = 0, st = mile_fill_(a, d[0]);
    break;
  case MILE_OP_COPY:
    c->n_out = 0, st = mile_copy_(a, in[1]);
    break;
  case MILE_OP_SET_REQUIRES_GRAD:
    c->n_out = 0, st = mile_set_requires_grad(a, (int32_t)i[0]);
    break;
  case MILE_OP_ZERO_GRAD:
    c->n_out = 0, mile_zero_grad(a), st = MILE_OK;
    break;
  case MILE_OP_SET_GRAD: {
    mile_tensor *g = in[1];
    c->n_out = 0;
    if (g && !mile_same_shape(g, a)) {
      st = mile_set_error(MILE_ERR_SHAPE, "set_grad: gradient shape does not match the tensor");
      break;
    }
    mile_tensor_release(a->grad);
    a->grad = mile_tensor_retain(g);
    st = MILE_OK;
    break;
  }
  case MILE_OP_GRAD:
    o[0] = mile_tensor_retain(a->grad), st = MILE_OK;
    break;
  case MILE_OP_BACKWARD:
    c->n_out = 0, st = mile_backward(a, in[1], (int32_t)i[0]);
    break;
  case MILE_OP_GRAD_MODE:
    c->n_out = 0, mile_set_grad_enabled((int32_t)i[0]), st = MILE_OK;
    break;
  case MILE_OP_PROBIT_DISCRETE:
    st = mile_probit_discrete(o, a, in[1], in[2], in[3]);
    break;
  case MILE_OP_PROBIT_GAUSSIAN:
    st = mile_probit_gaussian(o, a, in[1], in[2], in[3], in[4], in[5]);
    break;
  case MILE_OP_IV_LOSS:
    st = mile_intervention_loss(o, (mile_iv_loss)i[0], d[0], a, in[1], in[2], in[3], in[4]);
    break;
  case MILE_OP_TAKE_ACTIONS:
    st = mile_take_actions(o, a, in[1], in[2], i[0], i[1], (int32_t)i[2]);
    break;
  case MILE_OP_CHECK_ACTIONS:
    c->n_out = 0, st = mile_check_finite_actions(a);
    break;
  case MILE_OP_ADAM:
    c->n_out = 0, st = run_adam(c);
    break;
  case MILE_OP_SGD:
    c->n_out = 0, st = run_sgd(c);
    break;
  default:
    st = mile_set_error(MILE_ERR_ARGUMENT, "call: unknown op %d", (int)c->op);
  }
  if (st != MILE_OK) {
    mile_tensor_release(o[0]), mile_tensor_release(o[1]);
    o[0] = o[1] = NULL;
    c->n_out = 0;
  }
  return st;
}
