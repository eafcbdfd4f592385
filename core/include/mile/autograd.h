/* mile/autograd.h - define-by-run reverse-mode differentiation.
 *
 * When grad mode is on and an input of an op requires grad, the op's output gets
 * a grad_fn node that holds its inputs and whatever it saved for backward. The
 * graph belongs to the tensors: dropping the last output frees it. mile_backward
 * visits the nodes reachable from a root in reverse creation order (a valid
 * topological order) and accumulates gradients into leaves' .grad. */
#ifndef MILE_AUTOGRAD_H
#define MILE_AUTOGRAD_H

#include "mile/tensor.h"

/* Grad mode of this thread (on by default). set returns the previous mode. */
MILE_API int32_t mile_grad_enabled(void);
MILE_API int32_t mile_set_grad_enabled(int32_t enabled);

/* 1 when t requires grad (a leaf with requires_grad set, or a tensor with a grad_fn). */
MILE_API int32_t mile_requires_grad(const mile_tensor *t);
/* Mark a leaf as requiring grad (or not). Fails for non-leaves. */
MILE_API mile_status mile_set_requires_grad(mile_tensor *t, int32_t flag);
/* Drop t->grad (NULL afterwards). */
MILE_API void mile_zero_grad(mile_tensor *t);
/* A tensor sharing t's storage, with no grad_fn and requires_grad off. */
MILE_API mile_status mile_detach(mile_tensor **out, mile_tensor *t);

/* Backpropagate from root. seed is the gradient of root (same shape), or NULL when
 * root has one element (seed 1). Without retain_graph the saved tensors of every
 * visited node are released, and a second backward through them fails. */
MILE_API mile_status mile_backward(mile_tensor *root, mile_tensor *seed, int32_t retain_graph);

/* A custom op's backward: given the gradient of the output, write into grads[i]
 * a new tensor (the gradient of input i, any broadcastable shape) or leave NULL
 * for none. Return MILE_OK, or an error status after mile_set_error(). */
typedef mile_status (*mile_custom_backward_fn)(void *user, mile_tensor *grad_output, int32_t n_inputs,
                                               mile_tensor **grads);
/* Called once when the node is freed (may be NULL). */
typedef void (*mile_custom_free_fn)(void *user);

/* Attach a custom node to `output` (computed by the caller with grad mode off):
 * its inputs are `inputs[0..n-1]`; backward calls `backward(user, ...)`. Takes
 * ownership of `user` (free_user runs when the node dies, also on failure here).
 * Does nothing but free `user` when no input requires grad or grad mode is off. */
MILE_API mile_status mile_attach_custom(mile_tensor *output, int32_t n_inputs, mile_tensor *const *inputs,
                                        mile_custom_backward_fn backward, mile_custom_free_fn free_user,
                                        void *user, const char *name);

/* Name of the op that made t ("matmul", "add", ...) or NULL for a leaf. */
MILE_API const char *mile_grad_fn_name(const mile_tensor *t);

#endif
