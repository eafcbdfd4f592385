/* test_overflow.c - size arithmetic at the edges of int64: shapes, views and random
 * integers whose sizes overflow are errors (status + message), never wrapped
 * values that reach memory. Each case here was accepted (or crashed) before the
 * checked helpers of mile/checked.h. */
#include "test_util.h"

#include "mile/checked.h"

static const int64_t BIG = INT64_MAX / 2 + 1; /* 2^62 */

static void test_helpers(void **state) {
  (void)state;
  int64_t n = 0;
  size_t bytes = 0;
  assert_true(mile_add_i64(1, 2, &n) && n == 3);
  assert_false(mile_add_i64(INT64_MAX, 1, &n));
  assert_false(mile_mul_i64(BIG, 4, &n));
  assert_true(mile_array_bytes(10, 8, &bytes) && bytes == 80);
  assert_false(mile_array_bytes(-1, 8, &bytes));
  assert_false(mile_array_bytes(INT64_MAX / 2, 8, &bytes));
  assert_true(mile_numel_checked(3, (int64_t[]){2, 3, 4}, &n) && n == 24);
  assert_true(mile_numel_checked(2, (int64_t[]){0, 5}, &n) && n == 0);
  assert_true(mile_numel_checked(0, NULL, &n) && n == 1);
  assert_true(mile_numel_checked(2, (int64_t[]){1 << 20, 1 << 20}, &n) && n == MILE_MAX_NUMEL);
  assert_false(mile_numel_checked(2, (int64_t[]){(1 << 20) + 1, 1 << 20}, &n));
  assert_false(mile_numel_checked(2, (int64_t[]){-1, 4}, &n));
  /* a zero size does not hide the others: their strides would overflow */
  assert_false(mile_numel_checked(3, (int64_t[]){0, BIG, BIG}, &n));
  assert_false(mile_numel_checked(2, (int64_t[]){BIG + 1, 4}, &n)); /* wraps to 4 */
}

static void test_constructors_limit(void **state) {
  (void)state;
  mile_tensor *t = NULL;
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "2^40", mile_empty(&t, MILE_FLOAT32, 2, (int64_t[]){1 << 21, 1 << 21}));
  assert_null(t);
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "empty:", mile_zeros(&t, MILE_FLOAT64, 3, (int64_t[]){BIG, BIG, 4}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT32, 3, (int64_t[]){0, BIG, BIG}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_empty(&t, MILE_FLOAT32, 2, (int64_t[]){-1, 2}));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "too many", mile_arange(&t, MILE_FLOAT32, 0, 1e13, 1));
  assert_null(t);
}

static void test_narrow_overflow(void **state) {
  (void)state;
  mile_tensor *t = NULL, *v = NULL;
  OK(mile_zeros(&t, MILE_FLOAT32, 1, (int64_t[]){4}));
  /* start + length overflows int64: used to pass the range check */
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&v, t, 0, 1, INT64_MAX));
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&v, t, 0, INT64_MAX, 1));
  EXPECT_ERR(MILE_ERR_RANGE, mile_narrow(&v, t, 0, INT64_MIN, 1));
  EXPECT_ERR(MILE_ERR_RANGE, mile_select(&v, t, 0, INT64_MAX));
  assert_null(v);
  OK(mile_narrow(&v, t, 0, 4, 0)); /* the empty slice at the end is fine */
  assert_int_equal(mile_numel(v), 0);
  mile_tensor_release(v);
  OK(mile_narrow(&v, t, 0, 1, 3));
  assert_int_equal(mile_numel(v), 3);
  mile_tensor_release(v);
  mile_tensor_release(t);
}

static void test_view_reshape_overflow(void **state) {
  (void)state;
  mile_tensor *t = NULL, *v = NULL;
  OK(mile_zeros(&t, MILE_FLOAT32, 1, (int64_t[]){4}));
  /* (2^62 + 1) * 4 wraps to 4: the element count used to match */
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&v, t, 2, (int64_t[]){BIG + 1, 4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_reshape(&v, t, 2, (int64_t[]){BIG + 1, 4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&v, t, 3, (int64_t[]){-1, BIG, 4}));
  EXPECT_ERR(MILE_ERR_SHAPE, mile_view(&v, t, 3, (int64_t[]){BIG, BIG, 0}));
  assert_null(v);
  OK(mile_view(&v, t, 2, (int64_t[]){-1, 2}));
  assert_int_equal(v->shape[0], 2);
  mile_tensor_release(v);
  mile_tensor_release(t);
}

static void test_expand_overflow(void **state) {
  (void)state;
  mile_tensor *t = NULL, *v = NULL;
  OK(mile_zeros(&t, MILE_FLOAT32, 2, (int64_t[]){1, 1}));
  EXPECT_ERR_MSG(MILE_ERR_ARGUMENT, "expand", mile_expand(&v, t, 2, (int64_t[]){BIG + 1, 4}));
  EXPECT_ERR(MILE_ERR_ARGUMENT, mile_expand(&v, t, 3, (int64_t[]){1 << 21, 1 << 21, 1}));
  assert_null(v);
  OK(mile_expand(&v, t, 2, (int64_t[]){1 << 20, 1 << 20})); /* 2^40 elements, no memory */
  assert_int_equal(mile_numel(v), MILE_MAX_NUMEL);
  mile_tensor_release(v);
  mile_tensor_release(t);
}

static void test_rng_full_range(void **state) {
  (void)state;
  mile_rng *rng = mile_rng_new(7);
  assert_non_null(rng);
  /* n = 0 stands for 2^64: used to divide by zero */
  uint64_t a = mile_rng_below(rng, 0), b = mile_rng_below(rng, 0);
  assert_true(a != b);
  for (int i = 0; i < 1000; i++)
    assert_true(mile_rng_below(rng, 3) < 3);
  mile_rng_free(rng);
}

static void test_alloc_budget(void **state) {
  (void)state;
  mile_tensor *a = NULL, *b = NULL;
  assert_int_equal(mile_alloc_budget(100), -1);
  OK(mile_zeros(&a, MILE_FLOAT32, 1, (int64_t[]){10})); /* 40 bytes */
  EXPECT_ERR_MSG(MILE_ERR_NOMEM, "allocation budget (60 bytes left)", mile_zeros(&b, MILE_FLOAT64, 1, (int64_t[]){8}));
  assert_null(b);
  assert_int_equal(mile_alloc_budget(-1), 60);
  OK(mile_zeros(&b, MILE_FLOAT64, 1, (int64_t[]){1 << 16}));
  assert_int_equal(mile_alloc_budget(-1), -1);
  mile_tensor_release(a);
  mile_tensor_release(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_helpers),         cmocka_unit_test(test_constructors_limit),
      cmocka_unit_test(test_narrow_overflow), cmocka_unit_test(test_view_reshape_overflow),
      cmocka_unit_test(test_expand_overflow), cmocka_unit_test(test_rng_full_range),
      cmocka_unit_test(test_alloc_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
