/* mile/ops.h - differentiable tensor operations.
 *
 * Every function writes a new tensor into *out (the caller owns it) and records
 * an autograd node when grad mode is on and an input requires grad. Inputs of
 * elementwise operations broadcast like NumPy and must share a dtype. */
#ifndef MILE_OPS_H
#define MILE_OPS_H

#include "mile/tensor.h"

typedef enum mile_unary_op {
  MILE_NEG = 0, MILE_EXP, MILE_LOG, MILE_LOG1P, MILE_EXPM1, MILE_SQRT, MILE_ABS,
  MILE_TANH, MILE_SIGMOID, MILE_RELU,
  MILE_NORMAL_CDF,     /* Phi(x), the standard normal CDF */
  MILE_LOG_NORMAL_CDF, /* ln Phi(x), accurate for x down to -1e150 (asymptotic series) */
  MILE_SOFTPLUS,       /* ln(1 + e^x), stable */
  MILE_UNARY_COUNT
} mile_unary_op;

typedef enum mile_binary_op {
  MILE_ADD = 0, MILE_SUB, MILE_MUL, MILE_DIV, MILE_POW, MILE_MAXIMUM, MILE_MINIMUM,
  /* comparisons give 1.0 / 0.0 masks in the inputs' dtype; not differentiable */
  MILE_EQ, MILE_NE, MILE_LT, MILE_LE, MILE_GT, MILE_GE,
  MILE_BINARY_COUNT
} mile_binary_op;

typedef enum mile_reduce_op {
  MILE_SUM = 0, MILE_MEAN, MILE_MAX, MILE_MIN, MILE_LOGSUMEXP, MILE_REDUCE_COUNT
} mile_reduce_op;

/* Reduce over every dim rather than one. */
enum { MILE_ALL_DIMS = -1 };

/* Names used in error messages and by bindings ("exp", "add", "sum", ...). */
MILE_API const char *mile_unary_name(mile_unary_op op);
MILE_API const char *mile_binary_name(mile_binary_op op);
MILE_API const char *mile_reduce_name(mile_reduce_op op);

MILE_API mile_status mile_unary(mile_tensor **out, mile_unary_op op, mile_tensor *a);
MILE_API mile_status mile_binary(mile_tensor **out, mile_binary_op op, mile_tensor *a, mile_tensor *b);
/* a op s with a scalar right operand (left operand when `scalar_first`). */
MILE_API mile_status mile_binary_scalar(mile_tensor **out, mile_binary_op op, mile_tensor *a, double s,
                                        int32_t scalar_first);
/* min(max(a, lo), hi); pass -INFINITY / INFINITY for an open side. */
MILE_API mile_status mile_clamp(mile_tensor **out, mile_tensor *a, double lo, double hi);
/* cond != 0 ? a : b, all three broadcast together. Differentiable in a and b. */
MILE_API mile_status mile_where(mile_tensor **out, mile_tensor *cond, mile_tensor *a, mile_tensor *b);

/* Reduce over `dim` (or MILE_ALL_DIMS). keepdim keeps the reduced dim with size 1. */
MILE_API mile_status mile_reduce(mile_tensor **out, mile_reduce_op op, mile_tensor *a, int32_t dim, int32_t keepdim);
/* Max / min over dim with the 0-based position of the first extreme (as values of
 * a's dtype) in *indices; indices may be NULL. dim may not be MILE_ALL_DIMS. */
MILE_API mile_status mile_max_dim(mile_tensor **values, mile_tensor **indices, mile_tensor *a, int32_t dim,
                                  int32_t keepdim);
MILE_API mile_status mile_min_dim(mile_tensor **values, mile_tensor **indices, mile_tensor *a, int32_t dim,
                                  int32_t keepdim);
/* Position of the max over all elements (flat, 0-based) or over dim. */
MILE_API mile_status mile_argmax(mile_tensor **out, mile_tensor *a, int32_t dim, int32_t keepdim);
MILE_API mile_status mile_argmin(mile_tensor **out, mile_tensor *a, int32_t dim, int32_t keepdim);

MILE_API mile_status mile_softmax(mile_tensor **out, mile_tensor *a, int32_t dim);
MILE_API mile_status mile_log_softmax(mile_tensor **out, mile_tensor *a, int32_t dim);

/* out[i][j] = a[i][index[i][j]] along dim (index holds 0-based integers in a float
 * tensor with a's ndim; its other sizes must not exceed a's). Differentiable in a. */
MILE_API mile_status mile_gather(mile_tensor **out, mile_tensor *a, int32_t dim, mile_tensor *index);
/* Slices of a along dim at the 0-based positions of the 1-d tensor index. */
MILE_API mile_status mile_index_select(mile_tensor **out, mile_tensor *a, int32_t dim, mile_tensor *index);
/* Concatenation of n tensors along dim; all other sizes must match. */
MILE_API mile_status mile_cat(mile_tensor **out, int32_t n, mile_tensor *const *tensors, int32_t dim);

/* Matrix product, row-major: [n,k]x[k,m] -> [n,m]; batched [b,n,k]x[b,k,m] -> [b,n,m]
 * (either operand may be 2-d and is then shared by every batch). OpenBLAS gemm. */
MILE_API mile_status mile_matmul(mile_tensor **out, mile_tensor *a, mile_tensor *b);
/* x W^T + bias for x [..., in], W [out, in], bias [out] or NULL (an affine layer in one gemm). */
MILE_API mile_status mile_linear(mile_tensor **out, mile_tensor *x, mile_tensor *weight, mile_tensor *bias);

/* Activations fused into a linear layer. */
typedef enum mile_activation {
  MILE_ACT_NONE = 0, MILE_ACT_RELU, MILE_ACT_TANH, MILE_ACT_SIGMOID, MILE_ACT_COUNT
} mile_activation;
MILE_API const char *mile_activation_name(mile_activation act);
/* act(x W^T + bias) as one op and one autograd node: one gemm and one pass forward,
 * one pass and two gemms backward. Gives the same bits as mile_linear followed by
 * mile_unary (MILE_RELU, MILE_TANH, MILE_SIGMOID). */
MILE_API mile_status mile_linear_act(mile_tensor **out, mile_tensor *x, mile_tensor *weight, mile_tensor *bias,
                                     mile_activation act);

#endif
