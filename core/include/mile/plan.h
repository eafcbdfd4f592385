/* mile/plan.h - a compiled inference pass through a chain of linear layers.
 *
 * At batch 1 an MLP's forward is three matrix-vector products of a few microseconds;
 * made op by op it also pays an output tensor, a dispatch and (from Lua) a call per
 * layer. A plan runs the chain in one call into buffers it owns: running it allocates
 * only the output. It records no autograd graph (inference only). */
#ifndef MILE_PLAN_H
#define MILE_PLAN_H

#include "mile/ops.h"

typedef struct mile_mlp_plan mile_mlp_plan;

/* n layers act_i(h W_i^T + b_i): weights[i] [out_i, in_i] with in_{i+1} = out_i,
 * biases[i] [out_i] or NULL, all of one floating dtype. The plan retains the tensors:
 * in-place updates (optimiser steps, load_state_dict) are seen by the next run. */
MILE_API mile_status mile_mlp_plan_new(mile_mlp_plan **out, int32_t n, mile_tensor *const *weights,
                                       mile_tensor *const *biases, const mile_activation *acts);
/* The chain applied to x [..., in_0] (any leading dims, any strides) into a new
 * tensor [..., out_n]. Same values, to the bit, as mile_linear_act layer by layer. */
MILE_API mile_status mile_mlp_plan_run(mile_mlp_plan *plan, mile_tensor *x, mile_tensor **out);
MILE_API void mile_mlp_plan_free(mile_mlp_plan *plan);

#endif
