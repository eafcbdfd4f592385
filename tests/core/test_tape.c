/* test_tape.c - recording op calls and replaying them (mile/tape.h): a least-squares
 * step y = x w, loss = sum((y - t)^2), backward and one SGD update, recorded once and
 * replayed on new data. Gradients and updated weights are checked against the closed
 * form dL/dw = 2 x^T (x w - t) computed here in double; then the guards (shape, dtype,
 * grad mode), invalid recordings, constants written in place, and ops that fail. */
#include "test_util.h"

enum { B = 5, K = 3 };

static mile_tensor *filled(mile_dtype dt, int32_t nd, const int64_t *shape, double base) {
  mile_tensor *t;
  OK(mile_empty(&t, dt, nd, shape));
  int64_t n = numel_of(nd, shape);
  for (int64_t i = 0; i < n; i++)
    set_flat(t, i, base + 0.37 * (double)i - 0.05 * (double)(i * i % 7));
  return t;
}

static mile_tensor *run1(mile_call c) {
  OK(mile_call_run(&c));
  return c.out[0];
}

/* The step, written through mile_call_run as a binding would: returns the loss. */
static mile_tensor *step(mile_tensor *x, mile_tensor *t, mile_tensor *w, int64_t *sgd_steps) {
  mile_call zero = {.op = MILE_OP_ZERO_GRAD, .n_in = 1, .in = (mile_tensor *[]){w}};
  OK(mile_call_run(&zero));
  mile_tensor *y = run1((mile_call){.op = MILE_OP_MATMUL, .n_in = 2, .in = (mile_tensor *[]){x, w}});
  mile_tensor *d = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){y, t}, .i = {MILE_SUB}});
  mile_tensor *sq = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){d, d}, .i = {MILE_MUL}});
  mile_tensor *loss = run1(
      (mile_call){.op = MILE_OP_REDUCE, .n_in = 1, .in = (mile_tensor *[]){sq}, .i = {MILE_SUM, MILE_ALL_DIMS, 0}});
  mile_call back = {.op = MILE_OP_BACKWARD, .n_in = 2, .in = (mile_tensor *[]){loss, NULL}};
  OK(mile_call_run(&back));
  mile_call sgd = {
      .op = MILE_OP_SGD, .n_in = 1, .in = (mile_tensor *[]){w}, .d = {0.01}, .steps = sgd_steps, .n_steps = 1};
  OK(mile_call_run(&sgd));
  mile_tensor_release(y), mile_tensor_release(d), mile_tensor_release(sq);
  return loss;
}

/* Closed form: loss and the gradient 2 x^T (x w - t), in double. */
static double reference(const mile_tensor *x, const mile_tensor *t, const double *w, double *grad) {
  double loss = 0;
  for (int k = 0; k < K; k++)
    grad[k] = 0;
  for (int b = 0; b < B; b++) {
    double y = 0;
    for (int k = 0; k < K; k++)
      y += get_flat(x, b * K + k) * w[k];
    double r = y - get_flat(t, b);
    loss += r * r;
    for (int k = 0; k < K; k++)
      grad[k] += 2 * get_flat(x, b * K + k) * r;
  }
  return loss;
}

static void test_record_and_replay(void **state) {
  (void)state;
  const mile_dtype dt = MILE_FLOAT64;
  int64_t xs[2] = {B, K}, ts[2] = {B, 1}, ws[2] = {K, 1};
  mile_tensor *x = filled(dt, 2, xs, -0.6), *t = filled(dt, 2, ts, 0.3), *w = filled(dt, 2, ws, 0.1);
  OK(mile_set_requires_grad(w, 1));
  int64_t steps[1] = {0};
  mile_tensor *inputs[2] = {x, t};

  OK(mile_tape_begin(2, inputs));
  assert_int_equal(mile_tape_recording(), 1);
  mile_tensor *loss = step(x, t, w, steps);
  mile_tape *tape;
  OK(mile_tape_finish(&tape, 1, &loss));
  assert_int_equal(mile_tape_recording(), 0);
  assert_int_equal(mile_tape_n_ops(tape), 7);
  assert_string_equal(mile_tape_op_name(tape, 6), "sgd");
  mile_tensor_release(loss);

  for (int r = 0; r < 3; r++) {
    /* new data of the same shapes, written into new tensors */
    mile_tensor *x2 = filled(dt, 2, xs, -0.2 * r), *t2 = filled(dt, 2, ts, 0.5 + r);
    double wv[K], grad[K];
    for (int k = 0; k < K; k++)
      wv[k] = get_flat(w, k);
    double want = reference(x2, t2, wv, grad);
    mile_tensor *out = NULL, *in2[2] = {x2, t2};
    OK(mile_tape_replay(tape, 2, in2, &out));
    double got;
    OK(mile_item(out, &got));
    ASSERT_CLOSE(got, want, 1e-12, 0, "replayed loss, run %d", r);
    assert_null(out->grad_fn); /* its graph was consumed by the step's backward */
    for (int k = 0; k < K; k++) {
      ASSERT_CLOSE(get_flat(w->grad, k), grad[k], 1e-12, 1e-15, "replayed gradient %d, run %d", k, r);
      ASSERT_CLOSE(get_flat(w, k), wv[k] - 0.01 * grad[k], 1e-12, 1e-15, "updated weight %d, run %d", k, r);
    }
    int32_t n;
    int64_t *counts;
    OK(mile_tape_steps(tape, 0, &n, &counts));
    assert_int_equal(n, 1);
    assert_int_equal(counts[0], 2 + r); /* the recording's update was the first */
    mile_tensor_release(out), mile_tensor_release(x2), mile_tensor_release(t2);
  }
  int64_t *counts;
  int32_t n;
  assert_int_equal(mile_tape_steps(tape, 1, &n, &counts), MILE_ERR_RANGE);

  /* guards: nothing runs when an input differs */
  int64_t other[2] = {B + 1, K};
  mile_tensor *bad = filled(dt, 2, other, 0), *f32, *out = NULL;
  mile_tensor *in_bad[2] = {bad, t};
  double w0 = get_flat(w, 0);
  assert_int_equal(mile_tape_replay(tape, 2, in_bad, &out), MILE_ERR_SHAPE);
  assert_non_null(strstr(mile_last_error(), "input 1 has shape {6,3}, the recording had {5,3}"));
  assert_null(out);
  assert_int_equal(get_flat(w, 0), w0);
  OK(mile_to_dtype(&f32, x, MILE_FLOAT32));
  mile_tensor *in_f32[2] = {f32, t};
  assert_int_equal(mile_tape_replay(tape, 2, in_f32, &out), MILE_ERR_DTYPE);
  assert_int_equal(mile_tape_replay(tape, 1, inputs, &out), MILE_ERR_ARGUMENT);
  mile_set_grad_enabled(0);
  assert_int_equal(mile_tape_replay(tape, 2, inputs, &out), MILE_ERR_STATE);
  assert_non_null(strstr(mile_last_error(), "grad mode"));
  mile_set_grad_enabled(1);
  OK(mile_tape_check_inputs(tape, 2, inputs));

  mile_tape_free(tape);
  mile_tensor_release(bad), mile_tensor_release(f32);
  mile_tensor_release(x), mile_tensor_release(t), mile_tensor_release(w);
}

/* An op that fails during a replay stops it with its own message and the op's place. */
static void test_replay_error(void **state) {
  (void)state;
  int64_t s[1] = {4};
  mile_tensor *x = filled(MILE_FLOAT64, 1, s, 0.5), *w = filled(MILE_FLOAT64, 1, s, 0.2);
  mile_tensor *in[1] = {x};
  OK(mile_tape_begin(1, in));
  mile_tensor *y = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){x, w}, .i = {MILE_MUL}});
  mile_tensor *c = run1((mile_call){.op = MILE_OP_CHECK_ACTIONS, .n_in = 1, .in = (mile_tensor *[]){y}});
  assert_null(c);
  mile_tape *tape;
  OK(mile_tape_finish(&tape, 1, &y));
  mile_tensor_release(y);
  mile_tensor *x2 = filled(MILE_FLOAT64, 1, s, 0.5), *out = NULL;
  set_flat(x2, 2, INFINITY);
  mile_tensor *in2[1] = {x2};
  assert_int_equal(mile_tape_replay(tape, 1, in2, &out), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "replay of check_actions (op 2 of 2)"));
  assert_non_null(strstr(mile_last_error(), "sample 3, dimension 1"));
  assert_null(out);
  assert_int_equal(mile_grad_enabled(), 1);
  mile_tape_free(tape);
  mile_tensor_release(x), mile_tensor_release(w), mile_tensor_release(x2);
}

/* A constant written in place by the step starts each replay from its recorded value. */
static void test_constant_written_in_place(void **state) {
  (void)state;
  int64_t s[1] = {3};
  mile_tensor *x = filled(MILE_FLOAT64, 1, s, 1.0), *c;
  OK(mile_zeros(&c, MILE_FLOAT64, 1, s));
  mile_tensor *in[1] = {x};
  OK(mile_tape_begin(1, in));
  mile_tape_constant(c);
  mile_tensor *y = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){x, c}, .i = {MILE_ADD}});
  mile_call fill = {.op = MILE_OP_FILL, .n_in = 1, .in = (mile_tensor *[]){c}, .d = {5}};
  OK(mile_call_run(&fill));
  mile_tape *tape;
  OK(mile_tape_finish(&tape, 1, &y));
  for (int r = 0; r < 2; r++) {
    mile_tensor *out;
    OK(mile_tape_replay(tape, 1, in, &out));
    for (int i = 0; i < 3; i++)
      ASSERT_CLOSE(get_flat(out, i), get_flat(x, i), 0, 0, "x + 0, run %d", r);
    assert_int_equal(get_flat(c, 0), 5);
    mile_tensor_release(out);
  }
  mile_tape_free(tape);
  mile_tensor_release(y), mile_tensor_release(x), mile_tensor_release(c);
}

/* Ops name one slot per tensor: a step recorded with the same tensor twice cannot be
 * replayed on two different ones (nor the other way round). */
static void test_aliased_inputs(void **state) {
  (void)state;
  int64_t s[1] = {3};
  mile_tensor *a = filled(MILE_FLOAT64, 1, s, 1.0), *b = filled(MILE_FLOAT64, 1, s, -2.0);
  mile_tensor *same[2] = {a, a}, *two[2] = {a, b}, *bb[2] = {b, b};
  OK(mile_tape_begin(2, same));
  mile_tensor *y = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){a, a}, .i = {MILE_SUB}});
  mile_tape *tape;
  OK(mile_tape_finish(&tape, 1, &y));
  mile_tensor *out = NULL;
  assert_int_equal(mile_tape_replay(tape, 2, two, &out), MILE_ERR_STATE);
  assert_non_null(strstr(mile_last_error(), "input 2 was the same tensor as an earlier one"));
  OK(mile_tape_replay(tape, 2, bb, &out));
  ASSERT_CLOSE(get_flat(out, 0), 0, 0, 0, "b - b");
  mile_tensor_release(out), mile_tape_free(tape), mile_tensor_release(y);
  OK(mile_tape_begin(2, two));
  y = run1((mile_call){.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){a, b}, .i = {MILE_SUB}});
  OK(mile_tape_finish(&tape, 1, &y));
  assert_int_equal(mile_tape_replay(tape, 2, same, &out), MILE_ERR_STATE);
  assert_non_null(strstr(mile_last_error(), "input 2 is the same tensor as an earlier one"));
  mile_tape_free(tape), mile_tensor_release(y), mile_tensor_release(a), mile_tensor_release(b);
}

static void test_refused_recordings(void **state) {
  (void)state;
  int64_t s[1] = {2};
  mile_tensor *x = filled(MILE_FLOAT32, 1, s, 0), *stray = filled(MILE_FLOAT32, 1, s, 1);
  mile_tensor *in[1] = {x};
  mile_tape *tape = (mile_tape *)1;
  OK(mile_tape_begin(1, in));
  assert_int_equal(mile_tape_begin(1, in), MILE_ERR_STATE); /* one recording per thread */
  mile_tape_invalidate("item() read a value");
  mile_tape_invalidate("a second reason");
  assert_int_equal(mile_tape_finish(&tape, 0, NULL), MILE_ERR_STATE);
  assert_null(tape);
  assert_string_equal(mile_last_error(), "item() read a value");
  assert_int_equal(mile_tape_recording(), 0);

  /* a result the tape cannot name: made before the recording by no recorded op is
   * fine (an external); one made inside it by something unrecorded is not known */
  OK(mile_tape_begin(1, in));
  mile_tensor *fresh;
  OK(mile_zeros(&fresh, MILE_FLOAT32, 1, s));
  assert_int_equal(mile_tape_knows(fresh), 0);
  assert_int_equal(mile_tape_knows(x), 1);
  assert_int_equal(mile_tape_finish(&tape, 1, &fresh), MILE_ERR_STATE);
  assert_non_null(strstr(mile_last_error(), "result 1"));
  assert_int_equal(mile_tape_knows(fresh), 1); /* not recording: everything goes */

  OK(mile_tape_begin(1, in));
  mile_tape_abort();
  assert_int_equal(mile_tape_recording(), 0);
  assert_int_equal(mile_tape_finish(&tape, 0, NULL), MILE_ERR_STATE);

  /* a call with the wrong number of inputs fails before it runs, and records nothing */
  mile_call c = {.op = MILE_OP_MATMUL, .n_in = 1, .in = (mile_tensor *[]){x}};
  assert_int_equal(mile_call_run(&c), MILE_ERR_ARGUMENT);
  mile_call c2 = {.op = MILE_OP_BINARY, .n_in = 2, .in = (mile_tensor *[]){x, NULL}, .i = {MILE_ADD}};
  assert_int_equal(mile_call_run(&c2), MILE_ERR_ARGUMENT);
  assert_non_null(strstr(mile_last_error(), "input 2 is missing"));
  mile_call c3 = {.op = (mile_op)MILE_OP_COUNT};
  assert_int_equal(mile_call_run(&c3), MILE_ERR_ARGUMENT);
  assert_string_equal(mile_op_name(MILE_OP_LINEAR), "linear");
  assert_string_equal(mile_op_name(MILE_OP_SGD), "sgd");
  mile_tensor_release(fresh), mile_tensor_release(x), mile_tensor_release(stray);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record_and_replay),         cmocka_unit_test(test_replay_error),
      cmocka_unit_test(test_constant_written_in_place), cmocka_unit_test(test_aliased_inputs),
      cmocka_unit_test(test_refused_recordings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
