/* main.c - a program outside mile's tree, built against an installed mile (with
 * pkg-config and with find_package): fits y = 3x - 1 with autograd and SGD, reads a
 * safetensors checkpoint, and creates a LunarLander-v3 environment.
 *
 *   consumer POLICY.safetensors */
#include <stdio.h>

#include "mile/env.h"
#include "mile/mile.h"

#define CHECK(call)                                                                                                    \
  do {                                                                                                                 \
    if ((call) != MILE_OK) {                                                                                           \
      fprintf(stderr, "FAIL: %s: %s\n", #call, mile_last_error());                                                     \
      return 1;                                                                                                        \
    }                                                                                                                  \
  } while (0)

int main(int argc, char **argv) {
  const float xs[4] = {0, 1, 2, 3}, ys[4] = {-1, 2, 5, 8};
  const int64_t col[2] = {4, 1}, one[2] = {1, 1}, bias_shape[1] = {1};
  mile_tensor *x, *y, *w, *b;
  mile_safetensors *st;
  mile_env *env;
  double loss_value = 0;
  int step;
  if (argc != 2) {
    fprintf(stderr, "usage: consumer POLICY.safetensors\n");
    return 2;
  }
  printf("mile %s\n", mile_version());
  CHECK(mile_from_data(&x, MILE_FLOAT32, 2, col, xs, MILE_FLOAT32));
  CHECK(mile_from_data(&y, MILE_FLOAT32, 2, col, ys, MILE_FLOAT32));
  CHECK(mile_zeros(&w, MILE_FLOAT32, 2, one));
  CHECK(mile_zeros(&b, MILE_FLOAT32, 1, bias_shape));
  CHECK(mile_set_requires_grad(w, 1));
  CHECK(mile_set_requires_grad(b, 1));
  for (step = 0; step < 500; step++) {
    mile_tensor *pred, *diff, *sq, *loss;
    CHECK(mile_linear(&pred, x, w, b));
    CHECK(mile_binary(&diff, MILE_SUB, pred, y));
    CHECK(mile_binary(&sq, MILE_MUL, diff, diff));
    CHECK(mile_reduce(&loss, MILE_MEAN, sq, -1, 0));
    CHECK(mile_item(loss, &loss_value));
    mile_zero_grad(w);
    mile_zero_grad(b);
    CHECK(mile_backward(loss, NULL, 0));
    CHECK(mile_sgd_step(w, w->grad, NULL, 0.05, 0, 0, 0, 0, step == 0));
    CHECK(mile_sgd_step(b, b->grad, NULL, 0.05, 0, 0, 0, 0, step == 0));
    mile_tensor_release(loss);
    mile_tensor_release(sq);
    mile_tensor_release(diff);
    mile_tensor_release(pred);
  }
  printf("loss %.3g w %.4f b %.4f\n", loss_value, ((float *)mile_data(w))[0], ((float *)mile_data(b))[0]);
  if (!(loss_value < 1e-4)) {
    fprintf(stderr, "FAIL: the fit did not converge\n");
    return 1;
  }
  CHECK(mile_safetensors_load(&st, argv[1]));
  printf("%s: %d tensors, first %s\n", argv[1], (int)mile_safetensors_count(st), mile_safetensors_name(st, 0));
  if (mile_safetensors_count(st) < 1) return 1;
  mile_safetensors_free(st);
  if (mile_env_create(&env, "LunarLander-v3", NULL) != MILE_ENV_OK) {
    fprintf(stderr, "FAIL: mile_env_create: %s\n", mile_env_last_error());
    return 1;
  }
  printf("%s: observation dim %d\n", mile_env_name(env), (int)mile_env_observation_dim(env));
  mile_env_destroy(env);
  mile_tensor_release(x);
  mile_tensor_release(y);
  mile_tensor_release(w);
  mile_tensor_release(b);
  return 0;
}
