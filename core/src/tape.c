/* tape.c - recording a step's op calls and replaying them (mile/tape.h).
 *
 * While recording, every tensor the tape sees is retained, so no address is reused
 * inside one recording and a pointer names one slot. */
#include <string.h>

#include "internal.h"
#include "tape_internal.h"

typedef enum slot_kind { SLOT_INPUT, SLOT_EXTERNAL, SLOT_CONSTANT, SLOT_PRODUCED } slot_kind;

typedef struct slot {
  slot_kind kind;
  mile_tensor *t;        /* recording: the tensor; kept after it for externals and constants */
  mile_tensor *snapshot; /* a constant written in place by the tape: its value before that */
  int32_t last_use;      /* produced: index of the last op that reads it */
  /* inputs: what a replay's input must match, and the first earlier input that was the
   * same tensor (-1 if none): ops name one slot per tensor, so aliasing must match too */
  int32_t dtype, ndim, contiguous, requires_grad, same_as;
  int64_t shape[MILE_MAX_DIMS];
} slot;

typedef struct tape_op {
  mile_call call;    /* op, i, d; the tensor pointers of the recording are not kept */
  int32_t *in_slots; /* -1 for a NULL input */
  int32_t out_slots[2];
  int64_t *steps;
} tape_op;

struct mile_tape {
  slot *slots;
  int32_t n_slots, cap_slots;
  tape_op *ops;
  int32_t n_ops, cap_ops;
  int32_t n_inputs, n_outputs;
  int32_t *output_slots;
  int32_t grad_mode;
  char invalid[256];    /* why the recording cannot be replayed ("" while it can) */
  mile_tensor **values; /* replay scratch, one per slot */
};

static _Thread_local mile_tape *recording;

int32_t mile_tape_recording(void) { return recording != NULL; }

void mile_tape_invalidate(const char *reason) {
  if (recording && !recording->invalid[0])
    snprintf(recording->invalid, sizeof recording->invalid, "%s", reason ? reason : "invalidated");
}

static int32_t find_slot(const mile_tape *tp, const mile_tensor *t) {
  for (int32_t s = tp->n_slots - 1; s >= 0; s--)
    if (tp->slots[s].t == t) return s;
  return -1;
}

static int32_t add_slot(mile_tape *tp, slot_kind kind, mile_tensor *t) {
  if (tp->n_slots == tp->cap_slots) {
    int32_t cap = tp->cap_slots ? 2 * tp->cap_slots : 64;
    slot *s = realloc(tp->slots, (size_t)cap * sizeof *s);
    if (!s) return -1;
    tp->slots = s, tp->cap_slots = cap;
  }
  slot *s = &tp->slots[tp->n_slots];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->t = mile_tensor_retain(t);
  s->last_use = -1;
  if (t) {
    s->dtype = t->dtype, s->ndim = t->ndim;
    memcpy(s->shape, t->shape, sizeof s->shape);
    s->contiguous = mile_is_contiguous(t);
    s->requires_grad = mile_requires_grad(t);
  }
  return tp->n_slots++;
}

static void tape_free(mile_tape *tp) {
  if (!tp) return;
  for (int32_t s = 0; s < tp->n_slots; s++) {
    mile_tensor_release(tp->slots[s].t);
    mile_tensor_release(tp->slots[s].snapshot);
  }
  for (int32_t k = 0; k < tp->n_ops; k++)
    free(tp->ops[k].in_slots), free(tp->ops[k].steps);
  free(tp->slots), free(tp->ops), free(tp->output_slots), free(tp->values);
  free(tp);
}

void mile_tape_free(mile_tape *tape) { tape_free(tape); }

/* The first input before k that is the same tensor as input k, or -1. */
static int32_t first_same(mile_tensor *const *inputs, int32_t k) {
  for (int32_t j = 0; j < k; j++)
    if (inputs[j] == inputs[k]) return j;
  return -1;
}

mile_status mile_tape_begin(int32_t n_inputs, mile_tensor *const *inputs) {
  if (recording) return mile_set_error(MILE_ERR_STATE, "tape: this thread is already recording");
  if (n_inputs < 0 || (n_inputs > 0 && !inputs)) return mile_set_error(MILE_ERR_ARGUMENT, "tape: bad input list");
  mile_tape *tp = calloc(1, sizeof *tp);
  if (!tp) return mile_err_nomem("tape");
  for (int32_t k = 0; k < n_inputs; k++) {
    if (!inputs[k]) {
      tape_free(tp);
      return mile_set_error(MILE_ERR_ARGUMENT, "tape: input %d is NULL", (int)k + 1);
    }
    if (add_slot(tp, SLOT_INPUT, inputs[k]) < 0) {
      tape_free(tp);
      return mile_err_nomem("tape");
    }
    tp->slots[k].same_as = first_same(inputs, k);
  }
  tp->n_inputs = n_inputs;
  tp->grad_mode = mile_grad_enabled();
  recording = tp;
  return MILE_OK;
}

void mile_tape_abort(void) {
  tape_free(recording);
  recording = NULL;
}

void mile_tape_constant(mile_tensor *t) {
  if (!recording || !t || find_slot(recording, t) >= 0) return;
  if (add_slot(recording, SLOT_CONSTANT, t) < 0) mile_tape_invalidate("out of memory while recording");
}

int32_t mile_tape_knows(const mile_tensor *t) { return !recording || find_slot(recording, t) >= 0; }

/* The slot naming t, as an op's input: a tensor the tape has not seen existed before
 * the recording (a parameter) and is held by reference. */
static int32_t input_slot(mile_tape *tp, mile_tensor *t) {
  if (!t) return -1;
  int32_t s = find_slot(tp, t);
  if (s < 0) s = add_slot(tp, SLOT_EXTERNAL, t);
  if (s < 0) mile_tape_invalidate("out of memory while recording");
  return s;
}

/* Before an in-place op runs while recording: keep the value of a constant it writes,
 * so that each replay starts from it. */
static void before_in_place(mile_tape *tp, const mile_call *c) {
  if (c->op == MILE_OP_ADAM || c->op == MILE_OP_SGD) {
    for (int32_t k = 0; k < c->n_in; k++) {
      int32_t s = find_slot(tp, c->in[k]);
      if (s >= 0 && tp->slots[s].kind != SLOT_EXTERNAL)
        mile_tape_invalidate("an optimiser updates a tensor made inside the step (parameters and their state must "
                             "exist before it)");
    }
    return;
  }
  int32_t s = find_slot(tp, c->in[0]);
  if (s >= 0 && tp->slots[s].kind == SLOT_CONSTANT && !tp->slots[s].snapshot &&
      mile_clone(&tp->slots[s].snapshot, c->in[0]) != MILE_OK)
    mile_tape_invalidate("out of memory while recording");
}

static void append(mile_tape *tp, const mile_call *c) {
  if (tp->invalid[0]) return;
  if (tp->n_ops == tp->cap_ops) {
    int32_t cap = tp->cap_ops ? 2 * tp->cap_ops : 64;
    tape_op *ops = realloc(tp->ops, (size_t)cap * sizeof *ops);
    if (!ops) {
      mile_tape_invalidate("out of memory while recording");
      return;
    }
    tp->ops = ops, tp->cap_ops = cap;
  }
  tape_op *op = &tp->ops[tp->n_ops];
  memset(op, 0, sizeof *op);
  op->call = *c;
  op->call.in = NULL, op->call.steps = NULL, op->call.out[0] = op->call.out[1] = NULL;
  op->in_slots = malloc((size_t)(c->n_in > 0 ? c->n_in : 1) * sizeof *op->in_slots);
  if (c->n_steps > 0) {
    op->steps = malloc((size_t)c->n_steps * sizeof *op->steps);
    if (op->steps) memcpy(op->steps, c->steps, (size_t)c->n_steps * sizeof *op->steps);
  }
  if (!op->in_slots || (c->n_steps > 0 && !op->steps)) {
    free(op->in_slots), free(op->steps);
    mile_tape_invalidate("out of memory while recording");
    return;
  }
  for (int32_t k = 0; k < c->n_in; k++)
    op->in_slots[k] = input_slot(tp, c->in[k]);
  for (int32_t j = 0; j < 2; j++)
    op->out_slots[j] = -1;
  for (int32_t j = 0; j < c->n_out; j++)
    if (c->out[j] && (op->out_slots[j] = add_slot(tp, SLOT_PRODUCED, c->out[j])) < 0)
      mile_tape_invalidate("out of memory while recording");
  tp->n_ops++;
}

mile_status mile_call_run(mile_call *c) {
  mile_tape *tp = recording;
  if (tp && !tp->invalid[0] && mile_op_in_place(c->op) && c->n_in > 0 && c->in[0]) before_in_place(tp, c);
  MILE_TRY(mile_call_exec(c));
  if (tp) append(tp, c);
  return MILE_OK;
}

mile_status mile_tape_finish(mile_tape **out, int32_t n_outputs, mile_tensor *const *outputs) {
  *out = NULL;
  mile_tape *tp = recording;
  recording = NULL;
  if (!tp) return mile_set_error(MILE_ERR_STATE, "tape: this thread is not recording");
  mile_status st = MILE_OK;
  if (tp->invalid[0]) st = mile_set_error(MILE_ERR_STATE, "%s", tp->invalid);
  if (st == MILE_OK && n_outputs > 0 && !(tp->output_slots = malloc((size_t)n_outputs * sizeof(int32_t))))
    st = mile_err_nomem("tape");
  for (int32_t k = 0; st == MILE_OK && k < n_outputs; k++) {
    int32_t s = outputs[k] ? find_slot(tp, outputs[k]) : -1;
    if (outputs[k] && s < 0)
      st = mile_set_error(MILE_ERR_STATE, "result %d of the step was made by something that was not recorded",
                          (int)k + 1);
    tp->output_slots[k] = s;
  }
  tp->n_outputs = n_outputs;
  if (st == MILE_OK) {
    for (int32_t k = 0; k < tp->n_ops; k++)
      for (int32_t j = 0; j < tp->ops[k].call.n_in; j++) {
        int32_t s = tp->ops[k].in_slots[j];
        if (s >= 0) tp->slots[s].last_use = k;
      }
    for (int32_t k = 0; k < n_outputs; k++)
      if (tp->output_slots[k] >= 0) tp->slots[tp->output_slots[k]].last_use = tp->n_ops;
    /* inputs and produced tensors belong to this recording's run: drop them */
    for (int32_t s = 0; s < tp->n_slots; s++)
      if (tp->slots[s].kind == SLOT_INPUT || tp->slots[s].kind == SLOT_PRODUCED) {
        mile_tensor_release(tp->slots[s].t);
        tp->slots[s].t = NULL;
      }
    tp->values = calloc((size_t)(tp->n_slots > 0 ? tp->n_slots : 1), sizeof *tp->values);
    if (!tp->values) st = mile_err_nomem("tape");
  }
  if (st != MILE_OK) {
    tape_free(tp);
    return st;
  }
  *out = tp;
  return MILE_OK;
}

static mile_status check_input(const slot *s, const mile_tensor *t, int32_t k) {
  char a[96], b[96];
  if (!t) return mile_set_error(MILE_ERR_ARGUMENT, "replay: input %d is missing", (int)k + 1);
  if (t->dtype != s->dtype)
    return mile_set_error(MILE_ERR_DTYPE, "replay: input %d is %s, the recording had %s", (int)k + 1,
                          mile_dtype_name((mile_dtype)t->dtype), mile_dtype_name((mile_dtype)s->dtype));
  if (t->ndim != s->ndim || memcmp(t->shape, s->shape, sizeof(int64_t) * (size_t)t->ndim) != 0)
    return mile_set_error(MILE_ERR_SHAPE, "replay: input %d has shape %s, the recording had %s", (int)k + 1,
                          mile_shape_str(t, a, sizeof a), mile_dims_str(s->ndim, s->shape, b, sizeof b));
  if (mile_is_contiguous(t) != s->contiguous || mile_requires_grad(t) != s->requires_grad)
    return mile_set_error(MILE_ERR_STATE, "replay: input %d differs from the recording in %s", (int)k + 1,
                          mile_is_contiguous(t) != s->contiguous ? "contiguity" : "requires_grad");
  return MILE_OK;
}

static void release_produced(mile_tape *tp) {
  for (int32_t s = 0; s < tp->n_slots; s++) {
    if (tp->slots[s].kind == SLOT_PRODUCED) mile_tensor_release(tp->values[s]);
    tp->values[s] = NULL;
  }
}

static mile_status replay_ops(mile_tape *tp) {
  mile_tensor *in_small[8];
  for (int32_t k = 0; k < tp->n_ops; k++) {
    tape_op *op = &tp->ops[k];
    mile_call c = op->call;
    mile_tensor **in = c.n_in <= 8 ? in_small : malloc((size_t)c.n_in * sizeof *in);
    if (!in) return mile_err_nomem("replay");
    mile_status st = MILE_OK;
    for (int32_t j = 0; j < c.n_in; j++) {
      int32_t s = op->in_slots[j];
      in[j] = s >= 0 ? tp->values[s] : NULL;
      if (s >= 0 && !in[j])
        st = mile_set_error(MILE_ERR_STATE,
                            "replay: %s (op %d) reads a tensor that this run did not make (a gradient the "
                            "recording had is missing)",
                            mile_op_name(c.op), (int)k + 1);
    }
    c.in = in;
    c.steps = op->steps;
    if (st == MILE_OK) st = mile_call_exec(&c);
    if (in != in_small) free(in);
    if (st != MILE_OK) {
      char msg[512];
      snprintf(msg, sizeof msg, "%s", mile_last_error());
      return mile_set_error(st, "replay of %s (op %d of %d): %s", mile_op_name(c.op), (int)k + 1, (int)tp->n_ops, msg);
    }
    for (int32_t j = 0; j < 2; j++) {
      int32_t s = op->out_slots[j];
      if (s >= 0)
        tp->values[s] = c.out[j];
      else
        mile_tensor_release(c.out[j]);
    }
    for (int32_t j = 0; j < c.n_in; j++) { /* free what no later op reads */
      int32_t s = op->in_slots[j];
      if (s >= 0 && tp->slots[s].kind == SLOT_PRODUCED && tp->slots[s].last_use == k && tp->values[s]) {
        mile_tensor_release(tp->values[s]);
        tp->values[s] = NULL;
      }
    }
  }
  return MILE_OK;
}

mile_status mile_tape_check_inputs(const mile_tape *tp, int32_t n_inputs, mile_tensor *const *inputs) {
  if (!tp) return mile_set_error(MILE_ERR_ARGUMENT, "replay: no tape");
  if (n_inputs != tp->n_inputs)
    return mile_set_error(MILE_ERR_ARGUMENT, "replay: %d inputs given, the recording had %d", (int)n_inputs,
                          (int)tp->n_inputs);
  if (mile_grad_enabled() != tp->grad_mode)
    return mile_set_error(MILE_ERR_STATE, "replay: grad mode is %s, the recording had it %s",
                          mile_grad_enabled() ? "on" : "off", tp->grad_mode ? "on" : "off");
  for (int32_t k = 0; k < n_inputs; k++) {
    MILE_TRY(check_input(&tp->slots[k], inputs[k], k));
    if (first_same(inputs, k) != tp->slots[k].same_as)
      return mile_set_error(MILE_ERR_STATE, "replay: input %d %s", (int)k + 1,
                            tp->slots[k].same_as >= 0
                                ? "was the same tensor as an earlier one at the recording"
                                : "is the same tensor as an earlier one, unlike at the recording");
  }
  return MILE_OK;
}

mile_status mile_tape_replay(mile_tape *tp, int32_t n_inputs, mile_tensor *const *inputs, mile_tensor **outputs) {
  if (!tp) return mile_set_error(MILE_ERR_ARGUMENT, "replay: no tape");
  if (recording == tp) return mile_set_error(MILE_ERR_STATE, "replay: the tape is still recording");
  for (int32_t k = 0; k < tp->n_outputs; k++)
    outputs[k] = NULL;
  MILE_TRY(mile_tape_check_inputs(tp, n_inputs, inputs));
  for (int32_t s = 0; s < tp->n_slots; s++) {
    slot *sl = &tp->slots[s];
    tp->values[s] = s < n_inputs ? inputs[s] : sl->kind == SLOT_PRODUCED ? NULL : sl->t;
    if (sl->snapshot) MILE_TRY(mile_copy_(sl->t, sl->snapshot));
  }
  int32_t mode = mile_grad_enabled();
  mile_status st = replay_ops(tp);
  mile_set_grad_enabled(mode);
  for (int32_t k = 0; st == MILE_OK && k < tp->n_outputs; k++) {
    mile_tensor *t = tp->output_slots[k] >= 0 ? tp->values[tp->output_slots[k]] : NULL;
    /* a result whose graph a backward of the step already consumed (a loss) goes out
     * detached: nothing can use that graph again, and through its nodes' inputs it
     * would keep every activation of the step alive until Lua collects the result */
    if (t && t->grad_fn && t->grad_fn->released)
      st = mile_detach(&outputs[k], t);
    else
      outputs[k] = mile_tensor_retain(t);
  }
  if (st != MILE_OK)
    for (int32_t k = 0; k < tp->n_outputs; k++)
      mile_tensor_release(outputs[k]), outputs[k] = NULL;
  release_produced(tp);
  return st;
}

mile_status mile_tape_steps(mile_tape *tape, int32_t j, int32_t *n, int64_t **steps) {
  for (int32_t k = 0; k < tape->n_ops; k++) {
    tape_op *op = &tape->ops[k];
    if (op->call.n_steps > 0 && j-- == 0) {
      *n = op->call.n_steps;
      *steps = op->steps;
      return MILE_OK;
    }
  }
  return mile_set_error(MILE_ERR_RANGE, "tape: no such optimiser call");
}

int32_t mile_tape_n_inputs(const mile_tape *tape) { return tape->n_inputs; }
int32_t mile_tape_n_outputs(const mile_tape *tape) { return tape->n_outputs; }
int32_t mile_tape_n_ops(const mile_tape *tape) { return tape->n_ops; }
const char *mile_tape_op_name(const mile_tape *tape, int32_t k) {
  return k >= 0 && k < tape->n_ops ? mile_op_name(tape->ops[k].call.op) : NULL;
}
