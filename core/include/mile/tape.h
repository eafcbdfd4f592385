/* mile/tape.h - ops as data: one call descriptor runs any recordable op, and a tape
 * records a sequence of them once and replays it from C.
 *
 * A training step written in Lua crosses into C once per op. Recording that step runs
 * it normally while every op it calls through mile_call_run is appended to the
 * thread's tape; replaying runs the same ops, in the same order and through the same
 * dispatcher, on new input tensors of the same shapes and dtypes: no Lua per op, and
 * storage from the block cache (alloc.c), so no system allocation in steady state.
 *
 * What a tape holds, by slot:
 *   inputs     the step's arguments, given anew to each replay;
 *   externals  tensors that existed before the recording (parameters, optimiser
 *              state) or were made by a factory inside it (constants): held by
 *              reference, so in-place updates of parameters are seen. A constant that
 *              the recorded ops write in place is restored from a snapshot first;
 *   produced   outputs of recorded ops, made afresh by each replay and released after
 *              their last use.
 * A recording is refused (mile_tape_finish fails, naming the cause) when something
 * that cannot be replayed happened in it: mile_tape_invalidate says what. */
#ifndef MILE_TAPE_H
#define MILE_TAPE_H

#include "mile/tensor.h"

/* clang-format off */
typedef enum mile_op {
  MILE_OP_UNARY = 0,     /* i[0] = mile_unary_op */
  MILE_OP_BINARY,        /* i[0] = mile_binary_op */
  MILE_OP_BINARY_SCALAR, /* i[0] = mile_binary_op, i[1] = scalar first; d[0] = scalar */
  MILE_OP_CLAMP,         /* d[0] = lo, d[1] = hi */
  MILE_OP_WHERE,         /* in: cond, a, b */
  MILE_OP_REDUCE,        /* i[0] = mile_reduce_op, i[1] = dim, i[2] = keepdim */
  MILE_OP_MAX_DIM,       /* i[0] = dim, i[1] = keepdim; out: values, 0-based indices */
  MILE_OP_MIN_DIM,       /* as MAX_DIM */
  MILE_OP_ARGMAX,        /* i[0] = dim, i[1] = keepdim */
  MILE_OP_ARGMIN,        /* as ARGMAX */
  MILE_OP_SOFTMAX,       /* i[0] = dim */
  MILE_OP_LOG_SOFTMAX,   /* i[0] = dim */
  MILE_OP_GATHER,        /* i[0] = dim; in: a, index */
  MILE_OP_INDEX_SELECT,  /* i[0] = dim; in: a, index */
  MILE_OP_CAT,           /* i[0] = dim; in: the n tensors */
  MILE_OP_MATMUL,
  MILE_OP_LINEAR,        /* i[0] = mile_activation; in: x, weight, bias (may be NULL) */
  MILE_OP_TRANSPOSE,     /* i[0], i[1] = dims */
  MILE_OP_PERMUTE,       /* i[0..ndim) = dims */
  MILE_OP_NARROW,        /* i[0] = dim, i[1] = start, i[2] = length */
  MILE_OP_SELECT,        /* i[0] = dim, i[1] = index */
  MILE_OP_VIEW,          /* i[0] = ndim, i[1..] = shape */
  MILE_OP_RESHAPE,       /* as VIEW */
  MILE_OP_EXPAND,        /* as VIEW */
  MILE_OP_UNSQUEEZE,     /* i[0] = dim */
  MILE_OP_SQUEEZE,       /* i[0] = dim (< 0: every size-1 dim) */
  MILE_OP_CONTIGUOUS,
  MILE_OP_CLONE,
  MILE_OP_TO_DTYPE,      /* i[0] = mile_dtype */
  MILE_OP_DETACH,
  MILE_OP_FILL,          /* in place, no output; d[0] = value */
  MILE_OP_COPY,          /* in place, no output; in: dst, src */
  MILE_OP_SET_REQUIRES_GRAD, /* i[0] = flag */
  MILE_OP_ZERO_GRAD,
  MILE_OP_SET_GRAD,      /* in: tensor, gradient (may be NULL) */
  MILE_OP_GRAD,          /* out: the tensor's .grad, retained (NULL when it has none) */
  MILE_OP_BACKWARD,      /* in: root, seed (may be NULL); i[0] = retain_graph */
  MILE_OP_GRAD_MODE,     /* i[0] = enabled; no tensors */
  MILE_OP_PROBIT_DISCRETE, /* in: policy_logits, mental_logits, cost, scale */
  MILE_OP_PROBIT_GAUSSIAN, /* in: mu, log_sd, mental_mu, mental_log_sd, cost, scale */
  MILE_OP_IV_LOSS,       /* i[0] = mile_iv_loss, d[0] = lambda; in: log_p, log1m_p, log_pi, log_q (may be NULL), nu */
  MILE_OP_TAKE_ACTIONS,  /* i[0] = offset, i[1] = width, i[2] = check; in: matrix, actions, nu (may be NULL) */
  MILE_OP_CHECK_ACTIONS, /* no output: mile_check_finite_actions(in[0]) */
  MILE_OP_ADAM,          /* i[0] = decoupled; d = lr, beta1, beta2, eps, weight_decay;
                            in: n params, n exp_avgs, n exp_avg_sqs; steps[n] */
  MILE_OP_SGD,           /* i[0] = nesterov, i[1] = has buffers; d = lr, momentum, dampening, weight_decay;
                            in: n params (then n buffers when i[1]); steps[n] */
  MILE_OP_COUNT
} mile_op;
/* clang-format on */

enum { MILE_CALL_MAX_INT = MILE_MAX_DIMS + 2, MILE_CALL_MAX_DOUBLE = 5 };

/* One op call. in[] may hold NULL where the op allows it (an optional tensor). */
typedef struct mile_call {
  mile_op op;
  int32_t n_in;
  mile_tensor *const *in;
  int64_t i[MILE_CALL_MAX_INT];
  double d[MILE_CALL_MAX_DOUBLE];
  /* ADAM, SGD: one step count per parameter (n_in / 3 for Adam; the parameter count
   * for SGD), the count of updates made so far; the call advances those it updates */
  int64_t *steps;
  int32_t n_steps;
  /* outputs, new references owned by the caller (NULL for in-place ops, and for GRAD
   * of a tensor without a gradient) */
  mile_tensor *out[2];
  int32_t n_out;
  int32_t updated; /* ADAM, SGD: parameters updated (those with a gradient) */
} mile_call;

/* Name of an op ("linear", "backward", ...). */
MILE_API const char *mile_op_name(mile_op op);

/* Run the call (its outputs go to c->out); when this thread records, append it to
 * the tape. On failure nothing is recorded and c->out holds no references. */
MILE_API mile_status mile_call_run(mile_call *c);

typedef struct mile_tape mile_tape;

/* Start recording on this thread: the n tensors are the step's inputs (slots 0..n-1).
 * Fails when this thread already records. */
MILE_API mile_status mile_tape_begin(int32_t n_inputs, mile_tensor *const *inputs);
/* 1 while this thread records. */
MILE_API int32_t mile_tape_recording(void);
/* Mark the recording unreplayable; the first reason is kept (copied). No-op when not
 * recording. */
MILE_API void mile_tape_invalidate(const char *reason);
/* t was made inside the recording by a factory (zeros, from, a number boxed as a
 * tensor): a constant of the step, not an unknown tensor. No-op when not recording. */
MILE_API void mile_tape_constant(mile_tensor *t);
/* 1 when t can be named by the recording (an input, a constant, an op's output, or
 * a tensor that existed before it); 0 for a tensor made inside the recording by
 * something that was not recorded. Always 1 when not recording. */
MILE_API int32_t mile_tape_knows(const mile_tensor *t);
/* Stop recording. The n outputs (NULL entries allowed) are what replay returns. On
 * success *out is the tape; when the recording was invalidated, or an output was
 * made by something unrecorded, *out is NULL and the status is MILE_ERR_STATE with
 * the reason as message. Always stops the recording. */
MILE_API mile_status mile_tape_finish(mile_tape **out, int32_t n_outputs, mile_tensor *const *outputs);
/* Stop recording and drop it (after an error in the step). */
MILE_API void mile_tape_abort(void);

/* Replay on new inputs: each must have the shape, dtype, contiguity and
 * requires_grad of the recorded one, and grad mode must be as at the recording
 * (MILE_ERR_SHAPE / MILE_ERR_DTYPE / MILE_ERR_STATE otherwise, nothing run). outputs
 * gets n_outputs new references (NULL where the recording returned NULL). An op
 * that fails stops the replay with its error, its name prefixed; grad mode is
 * restored. */
/* The guards of mile_tape_replay alone: MILE_OK when the inputs match the recording
 * and grad mode is as it was (a caller with several tapes picks one with it). */
MILE_API mile_status mile_tape_check_inputs(const mile_tape *tape, int32_t n_inputs, mile_tensor *const *inputs);
MILE_API mile_status mile_tape_replay(mile_tape *tape, int32_t n_inputs, mile_tensor *const *inputs,
                                      mile_tensor **outputs);
/* The step counts of the tape's j-th optimiser call (ADAM or SGD, 0-based, in tape
 * order): *steps points into the tape (n entries). A replay starts from them and
 * advances those it updates, so a caller whose optimiser also steps elsewhere writes
 * its counts in before a replay and reads them back after. MILE_ERR_RANGE when the
 * tape has no such call. */
MILE_API mile_status mile_tape_steps(mile_tape *tape, int32_t j, int32_t *n, int64_t **steps);
MILE_API int32_t mile_tape_n_inputs(const mile_tape *tape);
MILE_API int32_t mile_tape_n_outputs(const mile_tape *tape);
MILE_API int32_t mile_tape_n_ops(const mile_tape *tape);
/* Name of op k (0-based) of the tape, for listings. */
MILE_API const char *mile_tape_op_name(const mile_tape *tape, int32_t k);
MILE_API void mile_tape_free(mile_tape *tape);

#endif
