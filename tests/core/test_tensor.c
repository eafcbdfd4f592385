/* test_tensor.c - tensors: constructors, refcounts, strided views, copies, element
 * access, in-place writes and the errors of all of these (status + message, no crash).
 *
 * Expected strides and offsets are written out by hand from the row-major layout. */
#include "test_util.h"

static const int64_t S234[3] = {2, 3, 4};

static void assert_strides(const mile_tensor *t, int32_t ndim, const int64_t *stride) {
  assert_int_equal(t->ndim, ndim);
  for (int32_t i = 0; i < ndim; i++)
    if (t->shape[i] != 1 && t->stride[i] != stride[i])
      fail_msg("stride of dim %d is %lld, expected %lld", i, (long long)t->stride[i], (long long)stride[i]);
}

/* An arange 0..n-1 of the given shape, as a contiguous tensor. */
static mile_tensor *iota(mile_dtype dt, int32_t ndim, const int64_t *shape) {
  mile_tensor *t = NULL;
  OK(mile_empty(&t, dt, ndim, shape));
  int64_t n = mile_numel(t);
  for (int64_t k = 0; k < n; k++) set_flat(t, k, (double)k);
  return t;
}

/* ---- names and constructors ------------------------------------------------------ */

static void test_names(void **state) {
  (void)state;
  assert_int_equal(mile_dtype_size(MILE_FLOAT32), 4);
  assert_int_equal(mile_dtype_size(MILE_FLOAT64), 8);
  assert_string_equal(mile_dtype_name(MILE_FLOAT32), "float32");
  assert_string_equal(mile_dtype_name(MILE_FLOAT64), "float64");
  assert_string_equal(mile_status_name(MILE_OK), "ok");
  assert_string_equal(mile_status_name(MILE_ERR_SHAPE), "shape");
  assert_string_equal(mile_status_name(MILE_ERR_CALLBACK), "callback");
  assert_string_equal(mile_status_name((mile_status)99), "unknown");
  assert_true(strlen(mile_version()) > 0);
  assert_non_null(mile_last_error());
}

static void test_empty_zeros_full(void **state) {
  (void)state;
  for (int dt = 0; dt < 2; dt++) {
    mile_tensor *e = NULL, *z = NULL, *f = NULL;
    OK(mile_empty(&e, (mile_dtype)dt, 3, S234));
    assert_shape(e, 3, S234);
    assert_strides(e, 3, (int64_t[]){12, 4, 1});
    assert_int_equal(e->offset, 0);
    assert_int_equal(e->dtype, dt);
    assert_int_equal(e->refcount, 1);
    assert_int_equal(mile_numel(e), 24);
    assert_true(mile_is_contiguous(e));
    assert_int_equal(mile_storage_nbytes(e), 24 * mile_dtype_size((mile_dtype)dt));
    assert_int_equal(mile_storage_refcount(e), 1);
    assert_null(e->grad);
    assert_null(e->grad_fn);
    assert_int_equal(e->requires_grad, 0);
    assert_int_equal((uintptr_t)mile_data(e) % 64, 0); /* aligned for vector loads */

    OK(mile_zeros(&z, (mile_dtype)dt, 3, S234));
    OK(mile_full(&f, (mile_dtype)dt, 3, S234, -2.5));
    for (int64_t k = 0; k < 24; k++) {
      assert_true(get_flat(z, k) == 0.0);
      assert_true(get_flat(f, k) == -2.5);
    }
    mile_tensor_release(e), mile_tensor_release(z), mile_tensor_release(f);
  }
}

static void test_scalar_and_zero_size(void **state) {
  (void)state;
  mile_tensor *s = NULL, *z = NULL, *sum = NULL;
  OK(mile_scalar(&s, MILE_FLOAT64, 3.25));
  assert_int_equal(s->ndim, 0);
  assert_int_equal(mile_numel(s), 1);
  assert_true(mile_is_contiguous(s));
  double v = 0;
  OK(mile_item(s, &v));
  assert_true(v == 3.25);
  OK(mile_get(s, NULL, &v));
  assert_true(v == 3.25);
  OK(mile_set(s, NULL, -1.0));
  OK(mile_item(s, &v));
  assert_true(v == -1.0);

  /* an empty tensor: numel 0, valid data pointer, fill/copy/reduce work */
  const int64_t shape[2] = {0, 3};
  OK(mile_zeros(&z, MILE_FLOAT32, 2, shape));
  assert_int_equal(mile_numel(z), 0);
  assert_non_null(mile_data(z));
  OK(mile_fill_(z, 1.0));
  OK(mile_copy_(z, s));
  OK(mile_reduce(&sum, MILE_SUM, z, 0, 0));
  assert_shape(sum, 1, (int64_t[]){3});
  for (int64_t k = 0; k < 3; k++) assert_true(get_flat(sum, k) == 0.0);
  EXPECT_ERR(MILE_ERR_SHAPE, mile_item(z, &v));
  mile_tensor_release(sum), mile_tensor_release(z), mile_tensor_release(s);
}

static void test_arange(void **state) {
  (void)state;
  mile_tensor *t = NULL;
  OK(mile_arange(&t, MILE_FLOAT64, 1, 2, 0.25));
  assert_shape(t, 1, (int64_t[]){4});
  for (int64_t k = 0; k < 4; k++) assert_true(get_flat(t, k) == 1 + 0.25 * (double)k);
  mile_tensor_release(t);

  OK(mile_arange(&t, MILE_FLOAT32, 5, 0, -2)); /* 5, 3, 1 */
  assert_shape(t, 1, (int64_t[]){3});
  assert_true(get_flat(t, 0) == 5 && get_flat(t, 1) == 3 && get_flat(t, 2) == 1);
  mile_tensor_release(t);

  OK(mile_arange(&t, MILE_FLOAT32, 0, 10, 3)); /* 0, 3, 6, 9 */
  assert_int_equal(mile_numel(t), 4);
  mile_tensor_release(t);

  OK(mile_arange(&t, MILE_FLOAT64, 3, 1, 1)); /* empty */
  assert_int_equal(mile_numel(t), 0);
  mile_tensor_release(t);

  t = (mile_tensor *)1;
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_arange(&t, MILE_FLOAT64, 0, 1, 0));
  assert_null(t);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_arange(&t, MILE_FLOAT64, 0, INFINITY, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_arange(&t, MILE_FLOAT64, NAN, 1, 1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_arange(&t, MILE_FLOAT64, 0, 1e300, 1)); /* too many */
  assert_null(t);
}

static void test_from_data(void **state) {
  (void)state;
  const double d[6] = {1.5, -2, 3, 1e-3, 0.1, 7};
  const float f[6] = {1.5f, -2, 3, 1e-3f, 0.1f, 7};
  const int64_t shape[2] = {2, 3};
  mile_tensor *a = NULL, *b = NULL, *c = NULL, *e = NULL;
  OK(mile_from_data(&a, MILE_FLOAT64, 2, shape, d, MILE_FLOAT64));
  OK(mile_from_data(&b, MILE_FLOAT32, 2, shape, d, MILE_FLOAT64));
  OK(mile_from_data(&c, MILE_FLOAT64, 2, shape, f, MILE_FLOAT32));
  OK(mile_from_data(&e, MILE_FLOAT32, 2, shape, f, MILE_FLOAT32));
  for (int64_t k = 0; k < 6; k++) {
    assert_true(get_flat(a, k) == d[k]);
    assert_true(get_flat(b, k) == (double)(float)d[k]);
    assert_true(get_flat(c, k) == (double)f[k]);
    assert_true(get_flat(e, k) == (double)f[k]);
  }
  mile_tensor *empty = NULL;
  OK(mile_from_data(&empty, MILE_FLOAT32, 2, (int64_t[]){0, 4}, NULL, MILE_FLOAT64)); /* nothing to read */
  assert_int_equal(mile_numel(empty), 0);
  mile_tensor_release(empty);
  double out[6];
  OK(mile_to_doubles(b, out));
  for (int k = 0; k < 6; k++) assert_true(out[k] == (double)(float)d[k]);
  mile_tensor_release(a), mile_tensor_release(b), mile_tensor_release(c), mile_tensor_release(e);
}

static void test_constructor_errors(void **state) {
  (void)state;
  mile_tensor *t = (mile_tensor *)1;
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT32, 9, nine));
  assert_null(t);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_zeros(&t, MILE_FLOAT32, 9, nine));
  assert_null(t);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_full(&t, MILE_FLOAT64, -1, nine, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT32, 2, (int64_t[]){3, -1}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT32, 2, NULL));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT64, 3, (int64_t[]){1LL << 30, 1LL << 30, 1LL << 30}));
  EXPECT_ERR(MILE_ERR_DTYPE, mile_empty(&t, (mile_dtype)7, 1, (int64_t[]){2}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_from_data(&t, MILE_FLOAT32, 1, (int64_t[]){-2}, nine, MILE_FLOAT64));
  assert_null(t);
  /* 8 dims is the limit and works */
  int64_t eight[8] = {1, 2, 1, 2, 1, 2, 1, 2};
  OK(mile_zeros(&t, MILE_FLOAT32, 8, eight));
  assert_int_equal(mile_numel(t), 16);
  mile_tensor *u = (mile_tensor *)1;
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_unsqueeze(&u, t, 0));
  assert_null(u);
  mile_tensor_release(t);
}

/* ---- refcounts ----------------------------------------------------------------------- */

static void test_refcounts(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT64, 3, S234), *v = NULL, *w = NULL;
  assert_ptr_equal(mile_tensor_retain(a), a);
  assert_int_equal(a->refcount, 2);
  mile_tensor_release(a);
  assert_int_equal(a->refcount, 1);
  mile_tensor_retain(NULL);
  mile_tensor_release(NULL);

  OK(mile_transpose(&v, a, 0, 2));
  OK(mile_select(&w, v, 1, 2));
  assert_int_equal(mile_storage_refcount(a), 3);
  assert_ptr_equal(v->storage, a->storage);
  assert_ptr_equal(w->storage, a->storage);
  assert_int_equal(a->refcount, 1); /* views hold the storage, not the base header */

  /* releasing the base (and the middle view) before the last view is safe */
  mile_tensor_release(a);
  mile_tensor_release(v);
  assert_int_equal(mile_storage_refcount(w), 1);
  /* w = a^T[:, 2, :], shape {4, 2}: w[i][j] = a[j][2][i] = 12 j + 8 + i */
  assert_shape(w, 2, (int64_t[]){4, 2});
  for (int64_t i = 0; i < 4; i++)
    for (int64_t j = 0; j < 2; j++) assert_true(get_at(w, (int64_t[]){i, j}) == (double)(12 * j + 8 + i));
  mile_tensor_release(w);
}

/* ---- views ----------------------------------------------------------------------------- */

static void test_transpose_permute(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT32, 3, S234), *t = NULL, *p = NULL;
  OK(mile_transpose(&t, a, 0, 2));
  assert_shape(t, 3, (int64_t[]){4, 3, 2});
  assert_strides(t, 3, (int64_t[]){1, 4, 12});
  assert_false(mile_is_contiguous(t));
  assert_ptr_equal(mile_data(t), mile_data(a));
  for (int64_t k = 0; k < 24; k++) {
    int64_t i[3];
    unravel(k, 3, t->shape, i);
    assert_true(get_at(t, i) == get_at(a, (int64_t[]){i[2], i[1], i[0]}));
  }
  OK(mile_permute(&p, a, (int32_t[]){1, 2, 0}));
  assert_shape(p, 3, (int64_t[]){3, 4, 2});
  assert_strides(p, 3, (int64_t[]){4, 1, 12});
  assert_true(get_at(p, (int64_t[]){2, 1, 1}) == get_at(a, (int64_t[]){1, 2, 1}));
  mile_tensor_release(p);

  mile_tensor *bad = (mile_tensor *)1;
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_transpose(&bad, a, 0, 3));
  assert_null(bad);
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_transpose(&bad, a, -1, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_permute(&bad, a, (int32_t[]){0, 0, 1}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_permute(&bad, a, (int32_t[]){0, 1, 3}));
  assert_null(bad);
  mile_tensor_release(t), mile_tensor_release(a);
}

static void test_narrow_select(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT64, 3, S234), *n = NULL, *s = NULL, *s2 = NULL;
  OK(mile_narrow(&n, a, 2, 1, 2));
  assert_shape(n, 3, (int64_t[]){2, 3, 2});
  assert_strides(n, 3, (int64_t[]){12, 4, 1});
  assert_int_equal(n->offset, 1);
  assert_false(mile_is_contiguous(n));
  assert_true(get_at(n, (int64_t[]){1, 2, 1}) == 12 + 8 + 2);

  OK(mile_select(&s, a, 1, 2));
  assert_shape(s, 2, (int64_t[]){2, 4});
  assert_strides(s, 2, (int64_t[]){12, 1});
  assert_int_equal(s->offset, 8);
  assert_true(get_at(s, (int64_t[]){1, 3}) == 12 + 8 + 3);
  OK(mile_select(&s2, s, 0, 1)); /* a view of a view: offsets add up */
  assert_int_equal(s2->offset, 20);
  assert_true(mile_is_contiguous(s2));
  assert_true(get_at(s2, (int64_t[]){0}) == 20);

  /* a narrowed length of 0 is a valid empty view */
  mile_tensor *e = NULL;
  OK(mile_narrow(&e, a, 0, 2, 0));
  assert_int_equal(mile_numel(e), 0);
  mile_tensor_release(e);

  mile_tensor *bad = (mile_tensor *)1;
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&bad, a, 2, 3, 2));
  assert_null(bad);
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&bad, a, 2, -1, 2));
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&bad, a, 2, 0, -1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_narrow(&bad, a, 3, 0, 1));
  EXPECT_ERR(MILE_ERR_RANGE, mile_select(&bad, a, 1, 3));
  EXPECT_ERR(MILE_ERR_RANGE, mile_select(&bad, a, 1, -1));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_select(&bad, a, -2, 0));
  assert_null(bad);
  mile_tensor_release(n), mile_tensor_release(s), mile_tensor_release(s2), mile_tensor_release(a);
}

static void test_view_reshape(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT32, 3, S234), *v = NULL, *t = NULL, *r = NULL, *bad = (mile_tensor *)1;
  OK(mile_view(&v, a, 2, (int64_t[]){-1, 6}));
  assert_shape(v, 2, (int64_t[]){4, 6});
  assert_strides(v, 2, (int64_t[]){6, 1});
  assert_ptr_equal(v->storage, a->storage);
  for (int64_t k = 0; k < 24; k++) assert_true(get_flat(v, k) == (double)k);
  mile_tensor_release(v);

  OK(mile_view(&v, a, 4, (int64_t[]){2, 1, 12, 1}));
  assert_strides(v, 4, (int64_t[]){12, 12, 1, 1});
  mile_tensor_release(v);
  OK(mile_view(&v, a, 1, (int64_t[]){-1}));
  assert_shape(v, 1, (int64_t[]){24});
  mile_tensor_release(v);

  /* a view that keeps a non-contiguous dim separate is still possible */
  OK(mile_transpose(&t, a, 1, 2)); /* {2,4,3} strides {12,1,4} */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, t, 3, (int64_t[]){1, 2, 12}));
  assert_null(bad);
  OK(mile_view(&v, t, 4, (int64_t[]){2, 2, 2, 3}));
  assert_strides(v, 4, (int64_t[]){12, 2, 1, 4});
  for (int64_t k = 0; k < 24; k++) assert_true(get_flat(v, k) == get_flat(t, k));
  mile_tensor_release(v), v = NULL;

  /* merging dims whose strides do not chain fails with SHAPE ... */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, t, 1, (int64_t[]){24}));
  assert_null(bad);
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, t, 2, (int64_t[]){2, 12}));
  /* ... and reshape copies then */
  OK(mile_reshape(&r, t, 2, (int64_t[]){2, -1}));
  assert_shape(r, 2, (int64_t[]){2, 12});
  assert_true(mile_is_contiguous(r));
  assert_ptr_not_equal(r->storage, a->storage);
  for (int64_t k = 0; k < 24; k++) assert_true(get_flat(r, k) == get_flat(t, k));
  mile_tensor_release(r);
  /* reshape of contiguous data shares storage */
  OK(mile_reshape(&r, a, 2, (int64_t[]){6, 4}));
  assert_ptr_equal(r->storage, a->storage);
  mile_tensor_release(r);

  /* to and from 0-d, and views of empty tensors */
  mile_tensor *one = NULL, *z0 = NULL, *e = NULL;
  OK(mile_full(&one, MILE_FLOAT32, 2, (int64_t[]){1, 1}, 5));
  OK(mile_view(&z0, one, 0, NULL));
  assert_int_equal(z0->ndim, 0);
  OK(mile_view(&v, z0, 3, (int64_t[]){1, -1, 1}));
  assert_shape(v, 3, (int64_t[]){1, 1, 1});
  assert_true(get_flat(v, 0) == 5);
  mile_tensor_release(v), mile_tensor_release(z0), mile_tensor_release(one);
  OK(mile_zeros(&e, MILE_FLOAT32, 3, (int64_t[]){2, 0, 3}));
  OK(mile_view(&v, e, 2, (int64_t[]){0, 7}));
  assert_shape(v, 2, (int64_t[]){0, 7});
  mile_tensor_release(v);
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, e, 2, (int64_t[]){-1, 0})); /* -1 is ambiguous */
  mile_tensor_release(e);

  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_view(&bad, a, 2, (int64_t[]){-1, -1}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_view(&bad, a, 2, (int64_t[]){-2, 12}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, a, 2, (int64_t[]){5, 5}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&bad, a, 2, (int64_t[]){-1, 5}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_reshape(&bad, a, 2, (int64_t[]){-1, 0}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_view(&bad, a, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 24}));
  assert_null(bad);
  mile_tensor_release(t), mile_tensor_release(a);
}

static void test_expand(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT64, 2, (int64_t[]){3, 1}), *e = NULL, *bad = (mile_tensor *)1;
  OK(mile_expand(&e, a, 3, (int64_t[]){2, -1, 4}));
  assert_shape(e, 3, (int64_t[]){2, 3, 4});
  assert_int_equal(e->stride[0], 0);
  assert_int_equal(e->stride[1], 1);
  assert_int_equal(e->stride[2], 0);
  assert_false(mile_is_contiguous(e));
  for (int64_t k = 0; k < 24; k++) {
    int64_t i[3];
    unravel(k, 3, e->shape, i);
    assert_true(get_at(e, i) == (double)i[1]);
  }
  /* writing through the base shows in every expanded position */
  OK(mile_set(a, (int64_t[]){1, 0}, 42));
  assert_true(get_at(e, (int64_t[]){1, 1, 3}) == 42);
  /* a 0-d tensor expands to anything */
  mile_tensor *s = NULL, *es = NULL;
  OK(mile_scalar(&s, MILE_FLOAT32, 1.5));
  OK(mile_expand(&es, s, 2, (int64_t[]){2, 3}));
  assert_int_equal(es->stride[0], 0);
  assert_int_equal(es->stride[1], 0);
  for (int64_t k = 0; k < 6; k++) assert_true(get_flat(es, k) == 1.5);
  mile_tensor_release(es), mile_tensor_release(s);
  EXPECT_ERR(MILE_ERR_SHAPE, mile_expand(&bad, a, 2, (int64_t[]){4, 4}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_expand(&bad, a, 1, (int64_t[]){3}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_expand(&bad, a, 3, (int64_t[]){-1, 3, 1}));
  assert_null(bad);
  mile_tensor_release(e), mile_tensor_release(a);
}

static void test_squeeze_unsqueeze(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT32, 3, (int64_t[]){2, 1, 3}), *s = NULL, *u = NULL, *bad = (mile_tensor *)1;
  OK(mile_squeeze(&s, a, 1));
  assert_shape(s, 2, (int64_t[]){2, 3});
  assert_strides(s, 2, (int64_t[]){3, 1});
  OK(mile_unsqueeze(&u, s, 2));
  assert_shape(u, 3, (int64_t[]){2, 3, 1});
  for (int64_t k = 0; k < 6; k++) assert_true(get_flat(u, k) == (double)k);
  mile_tensor_release(u);
  OK(mile_unsqueeze(&u, s, 0));
  assert_shape(u, 3, (int64_t[]){1, 2, 3});
  assert_true(mile_is_contiguous(u));
  mile_tensor_release(u), mile_tensor_release(s);

  mile_tensor *b = iota(MILE_FLOAT32, 4, (int64_t[]){1, 3, 1, 2});
  OK(mile_squeeze(&s, b, -1)); /* every size-1 dim */
  assert_shape(s, 2, (int64_t[]){3, 2});
  mile_tensor_release(s);

  EXPECT_ERR(MILE_ERR_SHAPE, mile_squeeze(&bad, a, 0));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_squeeze(&bad, a, 3));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_unsqueeze(&bad, a, 4));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_unsqueeze(&bad, a, -1));
  assert_null(bad);
  mile_tensor_release(b), mile_tensor_release(a);
}

/* ---- copies ---------------------------------------------------------------------------- */

static void test_contiguous_clone_to_dtype(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT64, 3, S234), *c = NULL, *t = NULL, *k = NULL, *d = NULL;
  OK(mile_contiguous(&c, a));
  assert_ptr_equal(c, a); /* already contiguous: the same tensor, one more reference */
  assert_int_equal(a->refcount, 2);
  mile_tensor_release(c);

  OK(mile_transpose(&t, a, 0, 1));
  OK(mile_contiguous(&c, t));
  assert_ptr_not_equal(c->storage, a->storage);
  assert_true(mile_is_contiguous(c));
  assert_shape(c, 3, (int64_t[]){3, 2, 4});
  for (int64_t i = 0; i < 24; i++) assert_true(get_flat(c, i) == get_flat(t, i));

  OK(mile_clone(&k, a));
  assert_ptr_not_equal(k->storage, a->storage);
  OK(mile_set(k, (int64_t[]){0, 0, 0}, 100));
  assert_true(get_at(a, (int64_t[]){0, 0, 0}) == 0); /* independent */

  OK(mile_to_dtype(&d, t, MILE_FLOAT32));
  assert_int_equal(d->dtype, MILE_FLOAT32);
  assert_shape(d, 3, (int64_t[]){3, 2, 4});
  for (int64_t i = 0; i < 24; i++) assert_true(get_flat(d, i) == get_flat(t, i));
  mile_tensor *same = NULL;
  OK(mile_to_dtype(&same, d, MILE_FLOAT32));
  assert_ptr_equal(same, d);
  mile_tensor_release(same);
  mile_tensor *back = NULL, *bad = (mile_tensor *)1;
  OK(mile_set(d, (int64_t[]){0, 0, 1}, 0.1));
  OK(mile_to_dtype(&back, d, MILE_FLOAT64));
  assert_true(get_at(back, (int64_t[]){0, 0, 1}) == (double)0.1f);
  EXPECT_ERR(MILE_ERR_DTYPE, mile_to_dtype(&bad, d, (mile_dtype)5));
  mile_tensor_release(back);
  mile_tensor_release(d), mile_tensor_release(k), mile_tensor_release(c), mile_tensor_release(t);
  mile_tensor_release(a);
}

/* ---- element access and in-place writes ----------------------------------------------- */

static void test_get_set_item(void **state) {
  (void)state;
  mile_tensor *a = NULL, *t = NULL;
  OK(mile_zeros(&a, MILE_FLOAT32, 3, S234));
  OK(mile_set(a, (int64_t[]){1, 2, 3}, 0.1));
  double v;
  OK(mile_get(a, (int64_t[]){1, 2, 3}, &v));
  assert_true(v == (double)0.1f); /* stored as float */
  assert_true(((float *)mile_data(a))[23] == 0.1f);
  OK(mile_transpose(&t, a, 0, 2));
  OK(mile_get(t, (int64_t[]){3, 2, 1}, &v));
  assert_true(v == (double)0.1f);

  EXPECT_ERR(MILE_ERR_RANGE, mile_get(a, (int64_t[]){2, 0, 0}, &v));
  EXPECT_ERR(MILE_ERR_RANGE, mile_get(a, (int64_t[]){0, 0, -1}, &v));
  EXPECT_ERR(MILE_ERR_RANGE, mile_set(a, (int64_t[]){0, 3, 0}, 1));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_item(a, &v));

  mile_tensor *one = NULL;
  OK(mile_narrow(&one, t, 0, 3, 1));
  mile_tensor *one2 = NULL;
  OK(mile_narrow(&one2, one, 1, 2, 1));
  mile_tensor *one3 = NULL;
  OK(mile_narrow(&one3, one2, 2, 1, 1));
  OK(mile_item(one3, &v)); /* a 1x1x1 view at an offset */
  assert_true(v == (double)0.1f);
  mile_tensor_release(one), mile_tensor_release(one2), mile_tensor_release(one3);
  mile_tensor_release(t), mile_tensor_release(a);
}

static void test_fill_copy(void **state) {
  (void)state;
  mile_tensor *a = NULL, *n = NULL;
  OK(mile_zeros(&a, MILE_FLOAT64, 3, S234));
  OK(mile_narrow(&n, a, 2, 1, 2));
  OK(mile_fill_(n, 7));
  for (int64_t k = 0; k < 24; k++) {
    int64_t i[3];
    unravel(k, 3, a->shape, i);
    assert_true(get_at(a, i) == ((i[2] == 1 || i[2] == 2) ? 7.0 : 0.0));
  }

  /* copy_ broadcasts the source and converts dtype: float32 {3,1} into a float64 {2,3,4} view */
  mile_tensor *src = NULL, *t = NULL;
  OK(mile_from_data(&src, MILE_FLOAT32, 2, (int64_t[]){3, 1}, (double[]){0.5, 1.5, 2.5}, MILE_FLOAT64));
  OK(mile_copy_(a, src));
  for (int64_t k = 0; k < 24; k++) {
    int64_t i[3];
    unravel(k, 3, a->shape, i);
    assert_true(get_at(a, i) == 0.5 + (double)i[1]);
  }
  /* into a transposed destination, from float64 to float32 */
  mile_tensor *f = NULL, *g = iota(MILE_FLOAT64, 2, (int64_t[]){4, 3});
  OK(mile_zeros(&f, MILE_FLOAT32, 2, (int64_t[]){3, 4}));
  OK(mile_transpose(&t, f, 0, 1));
  OK(mile_copy_(t, g));
  for (int64_t i = 0; i < 4; i++)
    for (int64_t j = 0; j < 3; j++) assert_true(get_at(f, (int64_t[]){j, i}) == (double)(3 * i + j));
  /* a 0-d source fills everything */
  mile_tensor *s = NULL;
  OK(mile_scalar(&s, MILE_FLOAT64, -3));
  OK(mile_copy_(t, s));
  for (int64_t k = 0; k < 12; k++) assert_true(get_flat(f, k) == -3);

  /* shapes that do not broadcast to the destination */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_copy_(f, g)); /* {4,3} into {3,4} */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_copy_(src, a)); /* a bigger source */
  mile_tensor_release(s), mile_tensor_release(g), mile_tensor_release(t), mile_tensor_release(f);
  mile_tensor_release(src), mile_tensor_release(n), mile_tensor_release(a);
}

static void test_to_doubles_strided(void **state) {
  (void)state;
  mile_tensor *a = iota(MILE_FLOAT32, 3, S234), *p = NULL;
  OK(mile_permute(&p, a, (int32_t[]){2, 0, 1}));
  double out[24];
  OK(mile_to_doubles(p, out));
  for (int64_t k = 0; k < 24; k++) assert_true(out[k] == get_flat(p, k));
  mile_tensor_release(p), mile_tensor_release(a);
}

/* Random strided tensors (permuted, narrowed, stepped by select) viewed and reshaped to
 * random shapes with the same element count: a view that succeeds, and every reshape,
 * must show the elements in the same row-major order. */
static void test_view_reshape_fuzz(void **state) {
  (void)state;
  mile_rng rng;
  mile_rng_seed(&rng, 404);
  int views = 0;
  for (int iter = 0; iter < 400; iter++) {
    int32_t nd = 1 + (int32_t)mile_rng_below(&rng, 4);
    int64_t shape[4];
    for (int32_t d = 0; d < nd; d++) shape[d] = 1 + (int64_t)mile_rng_below(&rng, 3);
    mile_tensor *t = iota(MILE_FLOAT64, nd, shape), *u = NULL;
    /* a random permutation */
    int32_t perm[4] = {0, 1, 2, 3};
    for (int32_t i = nd - 1; i > 0; i--) {
      int32_t j = (int32_t)mile_rng_below(&rng, (uint64_t)i + 1), x = perm[i];
      perm[i] = perm[j], perm[j] = x;
    }
    OK(mile_permute(&u, t, perm));
    mile_tensor_release(t), t = u;
    /* sometimes narrow one dim */
    int32_t d = (int32_t)mile_rng_below(&rng, (uint64_t)nd);
    if (t->shape[d] > 1 && mile_rng_below(&rng, 2)) {
      OK(mile_narrow(&u, t, d, 1, t->shape[d] - 1));
      mile_tensor_release(t), t = u;
    }
    /* a random target shape: split numel into up to 4 factors */
    int64_t n = mile_numel(t), target[4];
    int32_t tn = 1 + (int32_t)mile_rng_below(&rng, 4);
    int64_t rest = n;
    for (int32_t i = 0; i < tn - 1; i++) {
      int64_t f = 1;
      for (int64_t c = 1 + (int64_t)mile_rng_below(&rng, 6); c >= 1; c--)
        if (rest % c == 0) {
          f = c;
          break;
        }
      target[i] = f, rest /= f;
    }
    target[tn - 1] = rest;
    if (mile_rng_below(&rng, 2)) target[mile_rng_below(&rng, (uint64_t)tn)] = -1;
    mile_tensor *v = NULL, *r = NULL;
    mile_status st = mile_view(&v, t, tn, target);
    if (st == MILE_OK) {
      views++;
      assert_ptr_equal(v->storage, t->storage);
      assert_int_equal(mile_numel(v), n);
      for (int64_t k = 0; k < n; k++) assert_true(get_flat(v, k) == get_flat(t, k));
    } else {
      assert_int_equal(st, MILE_ERR_SHAPE);
      assert_false(mile_is_contiguous(t)); /* contiguous data can always be viewed */
    }
    OK(mile_reshape(&r, t, tn, target));
    for (int64_t k = 0; k < n; k++) assert_true(get_flat(r, k) == get_flat(t, k));
    mile_tensor_release(v), mile_tensor_release(r), mile_tensor_release(t);
  }
  assert_true(views > 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_empty_zeros_full),
      cmocka_unit_test(test_scalar_and_zero_size),
      cmocka_unit_test(test_arange),
      cmocka_unit_test(test_from_data),
      cmocka_unit_test(test_constructor_errors),
      cmocka_unit_test(test_refcounts),
      cmocka_unit_test(test_transpose_permute),
      cmocka_unit_test(test_narrow_select),
      cmocka_unit_test(test_view_reshape),
      cmocka_unit_test(test_expand),
      cmocka_unit_test(test_squeeze_unsqueeze),
      cmocka_unit_test(test_contiguous_clone_to_dtype),
      cmocka_unit_test(test_get_set_item),
      cmocka_unit_test(test_fill_copy),
      cmocka_unit_test(test_to_doubles_strided),
      cmocka_unit_test(test_view_reshape_fuzz),
  };
  return cmocka_run_group_tests_name("core_tensor", tests, NULL, NULL);
}
