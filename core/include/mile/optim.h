/* mile/optim.h - fused, in-place optimiser updates (Adam, AdamW, SGD) and gradient clipping.
 *
 * Each step function updates one parameter tensor and its state tensors in a single
 * pass over memory, with no allocation: a training step costs one loop per parameter,
 * not a chain of temporary tensors. The arithmetic follows PyTorch's torch.optim
 * (single-tensor, non-foreach code paths), so hyperparameters mean the same thing.
 *
 * All tensors given to one call must be contiguous, share the parameter's shape and
 * dtype, and be distinct from each other. The updates are not differentiable: they
 * write through any view and bump the storage version of what they change, so a
 * graph that saved an old value of a parameter refuses to run backward through it. */
#ifndef MILE_OPTIM_H
#define MILE_OPTIM_H

#include "mile/tensor.h"

/* One Adam (decoupled = 0) or AdamW (decoupled = 1) update of `param` from `grad`,
 * step being the 1-based count of updates of this parameter including this one:
 *
 *   decoupled:   param *= 1 - lr * weight_decay
 *   otherwise:   g = grad + weight_decay * param
 *   exp_avg    = beta1 * exp_avg    + (1 - beta1) * g
 *   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g^2
 *   param     -= lr / (1 - beta1^step) * exp_avg / (sqrt(exp_avg_sq / (1 - beta2^step)) + eps)
 *
 * param, exp_avg and exp_avg_sq are updated in place; grad is only read.
 * Returns MILE_ERR_ARGUMENT (NULL tensor, step < 1, lr/eps/weight_decay negative,
 * betas outside [0, 1)), MILE_ERR_SHAPE, MILE_ERR_DTYPE; nothing is written then. */
MILE_API mile_status mile_adam_step(mile_tensor *param, const mile_tensor *grad, mile_tensor *exp_avg,
                                    mile_tensor *exp_avg_sq, double lr, double beta1, double beta2, double eps,
                                    double weight_decay, int32_t decoupled, int64_t step);

/* One SGD update of `param` from `grad`, as torch.optim.SGD:
 *
 *   g = grad + weight_decay * param
 *   momentum != 0:  buf = first ? g : momentum * buf + (1 - dampening) * g
 *                   g   = nesterov ? g + momentum * buf : buf
 *   param -= lr * g
 *
 * `first` is 1 on the parameter's first update (the buffer is then set to g, not
 * blended; its old contents are ignored). momentum_buf may be NULL when momentum is 0.
 * nesterov needs momentum > 0 and dampening 0 (MILE_ERR_ARGUMENT otherwise). */
MILE_API mile_status mile_sgd_step(mile_tensor *param, const mile_tensor *grad, mile_tensor *momentum_buf, double lr,
                                   double momentum, double dampening, double weight_decay, int32_t nesterov,
                                   int32_t first);

/* The norm of all n gradients taken together as one vector (norm_type 2 for the
 * Euclidean norm, INFINITY for the max-abs norm, any p >= 1 otherwise), accumulated in
 * double precision, written to *total_norm. Entries of grads may be NULL (skipped);
 * gradients may have any strides. */
MILE_API mile_status mile_grad_norm(double *total_norm, int32_t n, mile_tensor *const *grads, double norm_type);

/* Clip gradients by their global norm, as torch.nn.utils.clip_grad_norm_: computes the
 * total norm (mile_grad_norm), and when it exceeds max_norm scales every gradient in
 * place by max_norm / (total_norm + 1e-6). *total_norm gets the norm before clipping
 * (may be NULL). A non-finite total norm is reported, and the gradients are left as
 * they are. Entries of grads may be NULL; expanded views (stride 0) are refused
 * (MILE_ERR_ARGUMENT, before anything is scaled). Bumps the version of what it scales. */
MILE_API mile_status mile_clip_grad_norm(double *total_norm, int32_t n, mile_tensor *const *grads, double max_norm,
                                         double norm_type);

#endif
