/* test_nomem.c - allocation-failure injection: every allocation an operation makes is
 * failed in turn (the 1st, the 2nd, ...), and each time the operation must return
 * MILE_ERR_NOMEM with a message, leave its outputs NULL and leak nothing.
 *
 * The executable replaces malloc and friends (glibc supports this) with counting
 * wrappers around __libc_malloc & co. The sanitizers bring their own allocator, so
 * this test is built only without MILE_SANITIZE; OpenBLAS runs single-threaded for
 * it (ctest sets OPENBLAS_NUM_THREADS=1) so that every allocation is on this thread. */
#include "test_util.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t alignment, size_t size);

static long live_blocks;     /* successful allocations not yet freed */
static long fail_countdown = -1; /* fail the allocation when this reaches 0 (-1: never) */
static int injected;         /* set when an allocation was failed */

static int fail_now(void) {
  if (fail_countdown < 0) return 0;
  if (fail_countdown-- == 0) {
    injected = 1;
    return 1;
  }
  return 0;
}

void *malloc(size_t size) {
  if (fail_now()) return NULL;
  void *p = __libc_malloc(size);
  if (p) live_blocks++;
  return p;
}
void *calloc(size_t n, size_t size) {
  if (fail_now()) return NULL;
  void *p = __libc_calloc(n, size);
  if (p) live_blocks++;
  return p;
}
void *realloc(void *old, size_t size) {
  if (!old) return malloc(size);
  if (size == 0) {
    free(old);
    return NULL;
  }
  if (fail_now()) return NULL;
  return __libc_realloc(old, size);
}
void free(void *p) {
  if (p) live_blocks--;
  __libc_free(p);
}
int posix_memalign(void **out, size_t alignment, size_t size) {
  if (fail_now()) return 12; /* ENOMEM */
  void *p = __libc_memalign(alignment, size);
  if (!p) return 12;
  live_blocks++;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t alignment, size_t size) {
  if (fail_now()) return NULL;
  void *p = __libc_memalign(alignment, size);
  if (p) live_blocks++;
  return p;
}
void *memalign(size_t alignment, size_t size) { return aligned_alloc(alignment, size); }

/* ---- the driver --------------------------------------------------------------------- */

/* An operation under test: creates up to 4 outputs from the fixture. */
typedef mile_status (*op_fn)(mile_tensor **out);

static mile_tensor *fx_a, *fx_b, *fx_g, *fx_idx, *fx_m, *fx_probs; /* inputs built once */
static mile_rng fx_rng;

static void fixture_build(void) {
  mile_rng_seed(&fx_rng, 1);
  const int64_t s34[2] = {3, 4};
  fx_a = rand_tensor(&fx_rng, MILE_FLOAT64, 2, s34, 0.5, 2);
  fx_b = rand_tensor(&fx_rng, MILE_FLOAT64, 2, s34, 0.5, 2);
  fx_g = rand_tensor(&fx_rng, MILE_FLOAT64, 2, s34, 0.5, 2); /* requires grad */
  OK(mile_set_requires_grad(fx_g, 1));
  fx_m = rand_tensor(&fx_rng, MILE_FLOAT64, 2, (int64_t[]){4, 2}, -1, 1);
  OK(mile_set_requires_grad(fx_m, 1));
  fx_idx = tensor_of(MILE_FLOAT64, 2, (int64_t[]){3, 2}, (double[]){0, 3, 1, 1, 2, 0});
  fx_probs = tensor_of(MILE_FLOAT32, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 0, 0, 1});
  /* warm OpenBLAS up outside the injection */
  mile_tensor *warm = NULL;
  OK(mile_matmul(&warm, fx_a, fx_m));
  mile_tensor_release(warm);
}

static void fixture_free(void) {
  mile_tensor_release(fx_a), mile_tensor_release(fx_b), mile_tensor_release(fx_g);
  mile_tensor_release(fx_idx), mile_tensor_release(fx_m), mile_tensor_release(fx_probs);
}

/* Run op with the k-th allocation failed, for k = 0, 1, ... until it runs clean. */
static void inject_all(const char *name, op_fn op) {
  for (long k = 0; k < 10000; k++) {
    mile_tensor *out[4] = {NULL, NULL, NULL, NULL};
    mile_cache_empty();
    long before = live_blocks;
    mile_set_error(MILE_OK, "%s", "");
    injected = 0;
    fail_countdown = k;
    mile_status st = op(out);
    fail_countdown = -1;
    if (!injected) {
      if (st != MILE_OK) fail_msg("%s: failed without an injected failure: %s", name, mile_last_error());
      for (int i = 0; i < 4; i++) mile_tensor_release(out[i]);
      mile_cache_empty();
      if (live_blocks != before) fail_msg("%s: leaked %ld blocks without failures", name, live_blocks - before);
      return;
    }
    if (st == MILE_OK) {
      /* a tolerated failure (nothing in mile may do that silently) */
      for (int i = 0; i < 4; i++) mile_tensor_release(out[i]);
      fail_msg("%s: allocation %ld failed but the call returned MILE_OK", name, k);
    }
    if (st != MILE_ERR_NOMEM)
      fail_msg("%s: allocation %ld failed: status %s (%s), expected nomem", name, k, mile_status_name(st),
               mile_last_error());
    if (mile_last_error()[0] == '\0') fail_msg("%s: allocation %ld failed: no message", name, k);
    for (int i = 0; i < 4; i++)
      if (out[i]) fail_msg("%s: allocation %ld failed: output %d is not NULL", name, k, i);
    mile_cache_empty();
    if (live_blocks != before) fail_msg("%s: allocation %ld failed: %ld blocks leaked", name, k, live_blocks - before);
  }
  fail_msg("%s: never ran clean", name);
}

/* ---- operations --------------------------------------------------------------------- */

#define MILE_TRY_OR(expr)         \
  do {                            \
    mile_status s_ = (expr);      \
    if (s_ != MILE_OK) return s_; \
  } while (0)


static mile_status op_empty(mile_tensor **o) { return mile_empty(&o[0], MILE_FLOAT32, 2, (int64_t[]){3, 4}); }
static mile_status op_zeros(mile_tensor **o) { return mile_zeros(&o[0], MILE_FLOAT64, 1, (int64_t[]){5}); }
static mile_status op_full(mile_tensor **o) { return mile_full(&o[0], MILE_FLOAT64, 1, (int64_t[]){5}, 2); }
static mile_status op_scalar(mile_tensor **o) { return mile_scalar(&o[0], MILE_FLOAT32, 2); }
static mile_status op_arange(mile_tensor **o) { return mile_arange(&o[0], MILE_FLOAT32, 0, 10, 1); }
static mile_status op_from_data(mile_tensor **o) {
  return mile_from_data(&o[0], MILE_FLOAT32, 1, (int64_t[]){3}, (double[]){1, 2, 3}, MILE_FLOAT64);
}
static mile_status op_transpose(mile_tensor **o) { return mile_transpose(&o[0], fx_g, 0, 1); }
static mile_status op_narrow(mile_tensor **o) { return mile_narrow(&o[0], fx_g, 1, 1, 2); }
static mile_status op_view(mile_tensor **o) { return mile_view(&o[0], fx_g, 1, (int64_t[]){-1}); }
static mile_status op_reshape_copy(mile_tensor **o) {
  mile_tensor *t = NULL;
  MILE_TRY_OR(mile_transpose(&t, fx_g, 0, 1));
  mile_status st = mile_reshape(&o[0], t, 1, (int64_t[]){12});
  mile_tensor_release(t);
  return st;
}
static mile_status op_expand(mile_tensor **o) {
  return mile_expand(&o[0], fx_g, 3, (int64_t[]){2, 3, 4});
}
static mile_status op_clone(mile_tensor **o) { return mile_clone(&o[0], fx_g); }
static mile_status op_to_dtype(mile_tensor **o) { return mile_to_dtype(&o[0], fx_g, MILE_FLOAT32); }
static mile_status op_unary(mile_tensor **o) { return mile_unary(&o[0], MILE_EXP, fx_g); }
static mile_status op_binary(mile_tensor **o) { return mile_binary(&o[0], MILE_MUL, fx_g, fx_a); }
static mile_status op_binary_scalar(mile_tensor **o) { return mile_binary_scalar(&o[0], MILE_POW, fx_g, 2, 0); }
static mile_status op_clamp(mile_tensor **o) { return mile_clamp(&o[0], fx_g, 0.7, 1.5); }
static mile_status op_where(mile_tensor **o) { return mile_where(&o[0], fx_a, fx_g, fx_b); }
static mile_status op_reduce_max(mile_tensor **o) { return mile_reduce(&o[0], MILE_MAX, fx_g, 1, 0); }
static mile_status op_reduce_sum(mile_tensor **o) { return mile_reduce(&o[0], MILE_SUM, fx_g, MILE_ALL_DIMS, 0); }
static mile_status op_max_dim(mile_tensor **o) { return mile_max_dim(&o[0], &o[1], fx_g, 0, 1); }
static mile_status op_argmax(mile_tensor **o) { return mile_argmax(&o[0], fx_g, 1, 0); }
static mile_status op_softmax(mile_tensor **o) { return mile_log_softmax(&o[0], fx_g, 1); }
static mile_status op_gather(mile_tensor **o) { return mile_gather(&o[0], fx_g, 1, fx_idx); }
static mile_status op_index_select(mile_tensor **o) {
  mile_tensor *ix = NULL;
  MILE_TRY_OR(mile_select(&ix, fx_idx, 1, 0));
  mile_status st = mile_index_select(&o[0], fx_g, 0, ix);
  mile_tensor_release(ix);
  return st;
}
static mile_status op_cat(mile_tensor **o) { return mile_cat(&o[0], 3, (mile_tensor *[]){fx_a, fx_g, fx_b}, 1); }
static mile_status op_matmul(mile_tensor **o) { return mile_matmul(&o[0], fx_g, fx_m); }
static mile_status op_linear(mile_tensor **o) {
  mile_tensor *mt = NULL, *bias = NULL;
  MILE_TRY_OR(mile_transpose(&mt, fx_m, 0, 1));
  mile_status st = mile_select(&bias, fx_m, 0, 1);
  if (st == MILE_OK) st = mile_linear(&o[0], fx_g, mt, bias);
  mile_tensor_release(mt), mile_tensor_release(bias);
  return st;
}
static mile_status op_categorical(mile_tensor **o) { return mile_categorical(&o[0], &fx_rng, fx_probs); }

/* A whole forward and backward; on failure the partial gradients are dropped. */
static mile_status op_forward_backward(mile_tensor **o) {
  mile_tensor *h = NULL, *t = NULL, *l = NULL, *s = NULL;
  mile_status st = mile_matmul(&h, fx_g, fx_m);
  if (st == MILE_OK) st = mile_unary(&t, MILE_TANH, h);
  if (st == MILE_OK) st = mile_log_softmax(&l, t, 1);
  if (st == MILE_OK) st = mile_reduce(&s, MILE_MEAN, l, MILE_ALL_DIMS, 0);
  if (st == MILE_OK) st = mile_backward(s, NULL, 0);
  if (st == MILE_OK) {
    if (!fx_g->grad || !fx_m->grad) st = mile_set_error(MILE_ERR_STATE, "no gradient");
    else o[0] = mile_tensor_retain(fx_g->grad), o[1] = mile_tensor_retain(fx_m->grad);
  }
  mile_zero_grad(fx_g), mile_zero_grad(fx_m);
  mile_tensor_release(h), mile_tensor_release(t), mile_tensor_release(l), mile_tensor_release(s);
  return st;
}

static int custom_freed;
static void custom_free(void *u) {
  custom_freed++;
  free(u);
}
static mile_status custom_bw(void *u, mile_tensor *g, int32_t n, mile_tensor **grads) {
  (void)u, (void)n;
  return mile_binary_scalar(&grads[0], MILE_MUL, g, 2, 0);
}
static mile_status op_custom(mile_tensor **o) {
  void *user = malloc(16);
  if (!user) return mile_set_error(MILE_ERR_NOMEM, "test: user data");
  int32_t previous = mile_set_grad_enabled(0);
  mile_status st = mile_binary_scalar(&o[0], MILE_MUL, fx_g, 2, 0);
  mile_set_grad_enabled(previous);
  if (st != MILE_OK) {
    free(user);
    return st;
  }
  int freed = custom_freed;
  st = mile_attach_custom(o[0], 1, &fx_g, custom_bw, custom_free, user, "double");
  if (st != MILE_OK) {
    if (custom_freed != freed + 1) fail_msg("attach_custom failed without freeing the user data");
    mile_tensor_release(o[0]), o[0] = NULL;
  }
  return st;
}

static mile_status op_rng_new(mile_tensor **o) {
  (void)o;
  mile_rng *r = mile_rng_new(5);
  if (!r) return mile_last_error()[0] ? MILE_ERR_NOMEM : MILE_ERR_STATE;
  mile_rng_free(r);
  return MILE_OK;
}

static const struct {
  const char *name;
  op_fn fn;
} OPS[] = {
    {"empty", op_empty},           {"zeros", op_zeros},
    {"full", op_full},             {"scalar", op_scalar},
    {"arange", op_arange},         {"from_data", op_from_data},
    {"transpose", op_transpose},   {"narrow", op_narrow},
    {"view", op_view},             {"reshape (copy)", op_reshape_copy},
    {"expand", op_expand},         {"clone", op_clone},
    {"to_dtype", op_to_dtype},     {"unary", op_unary},
    {"binary", op_binary},         {"binary_scalar", op_binary_scalar},
    {"clamp", op_clamp},           {"where", op_where},
    {"reduce max", op_reduce_max}, {"reduce sum", op_reduce_sum},
    {"max_dim", op_max_dim},       {"argmax", op_argmax},
    {"log_softmax", op_softmax},   {"gather", op_gather},
    {"index_select", op_index_select}, {"cat", op_cat},
    {"matmul", op_matmul},         {"linear", op_linear},
    {"categorical", op_categorical}, {"forward+backward", op_forward_backward},
    {"attach_custom", op_custom},  {"rng_new", op_rng_new},
};

static void test_every_allocation_fails_cleanly(void **state) {
  (void)state;
  fixture_build();
  for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
    inject_all(OPS[i].name, OPS[i].fn);
    if (OPS[i].fn == op_forward_backward) continue;
    /* the same with grad mode off (no graph nodes) */
    int32_t previous = mile_set_grad_enabled(0);
    inject_all(OPS[i].name, OPS[i].fn);
    mile_set_grad_enabled(previous);
  }
  fixture_free();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_allocation_fails_cleanly),
  };
  return cmocka_run_group_tests_name("core_nomem", tests, NULL, NULL);
}
