/* mile/intervention.h - the probit intervention model of MILE and its losses.
 *
 * Notation as in DESIGN.md section 1: pi_h the human policy (the network the robot
 * learns), pihat the mental model, c >= 0 the intervention cost, sigma > 0 the probit
 * scale, Phi the standard normal CDF.
 *
 *   Delta(a) = ln pi_h(a) - E_{a'~pihat}[ln pi_h(a')]
 *   q(a)     = Phi((Delta(a) - c) / sigma)
 *   p        = E_{a~pi_h}[q(a)]
 *
 * Every function computes in double precision internally and in log space where a
 * value can underflow (ln p and ln(1 - p) never come from a rounded p), and returns
 * tensors of the inputs' dtype. Each is one fused autograd node with an analytic
 * backward into every tensor input that requires grad, cost and scale included.
 * The derivations are in docs/intervention.md and above each kernel.
 *
 * cost and scale are tensors with one element (any ndim) or of shape [B]; scale must
 * be positive and both finite (MILE_ERR_ARGUMENT otherwise). Every value of the logits,
 * means and log-sds must be finite: a NaN or +-inf is MILE_ERR_ARGUMENT naming the
 * argument, the sample and the column (0-based) of the first one, found as each row is
 * loaded (no extra pass). Any finite values are fine, however large: outputs are then
 * never NaN (see docs/intervention.md for the range). Shapes that do not fit
 * give MILE_ERR_SHAPE, dtypes that differ MILE_ERR_DTYPE; messages name the argument. */
#ifndef MILE_INTERVENTION_H
#define MILE_INTERVENTION_H

#include "mile/tensor.h"

/* Column layout of the packed output of mile_probit_discrete for A actions:
 * [0, A) ln pi_h(a) | [A, 2A) Delta(a) | [2A, 3A) ln q(a) | [3A, 4A) q(a) | 4A: ln p | 4A+1: ln(1 - p). */
enum { MILE_PROBIT_D_LOG_PI = 0, MILE_PROBIT_D_DELTA = 1, MILE_PROBIT_D_LOG_Q = 2, MILE_PROBIT_D_Q = 3 };

/* The discrete model (exact). policy_logits and mental_logits are [B, A] (A >= 1) of
 * one dtype; pi_h = softmax(policy_logits), pihat = softmax(mental_logits). *out gets
 * a new [B, 4A + 2] tensor laid out as above (take views of it: narrow/select are
 * differentiable). Finite inputs give finite outputs and gradients. */
MILE_API mile_status mile_probit_discrete(mile_tensor **out, mile_tensor *policy_logits, mile_tensor *mental_logits,
                                          mile_tensor *cost, mile_tensor *scale);

/* Column layout of the packed output of mile_probit_gaussian. */
enum { MILE_PROBIT_G_K = 0, MILE_PROBIT_G_LOGP = 1, MILE_PROBIT_G_LOG1MP = 2, MILE_PROBIT_G_WIDTH = 3 };

/* The diagonal Gaussian model: pi_h = N(mu, exp(log_sd)^2), pihat = N(mental_mu,
 * exp(mental_log_sd)^2), all four [B, D] of one dtype. *out gets a new [B, 3] tensor:
 * K = sum_d ((m_d - mu_d)^2 + s_d^2) / (2 sd_d^2), ln p and ln(1 - p), where
 * p = E_{X~chi2(D)}[Phi((K - c - X/2) / sigma)] is computed by fixed Gauss rules chosen
 * per sample (generalised Gauss-Laguerre in X/2 with an exponential tilt, or
 * Gauss-Hermite over the probit noise against the incomplete gamma function);
 * absolute error of p below 1e-7, see docs/intervention.md for the measurements. */
MILE_API mile_status mile_probit_gaussian(mile_tensor **out, mile_tensor *mu, mile_tensor *log_sd,
                                          mile_tensor *mental_mu, mile_tensor *mental_log_sd, mile_tensor *cost,
                                          mile_tensor *scale);

/* The pair (ln p, ln(1 - p)) of the Gaussian model for one sample, in double: the
 * scalar kernel behind mile_probit_gaussian, for tests and callers without tensors.
 * dims >= 1, scale > 0. Any of the derivative pointers may be NULL; they receive
 * d ln p / d t0, d ln p / d scale, d ln(1-p) / d t0, d ln(1-p) / d scale with t0 = K - c. */
MILE_API mile_status mile_probit_gaussian_logp(int32_t dims, double t0, double scale, double *logp, double *log1mp,
                                               double *dlogp_dt0, double *dlogp_dscale, double *dlog1mp_dt0,
                                               double *dlog1mp_dscale);

/* The loss variants of DESIGN.md section 1. */
typedef enum mile_iv_loss {
  MILE_IV_PAPER = 0,     /* lambda J1 + (1 - lambda) J2 */
  MILE_IV_JOINT = 1,     /* -ln pi_h(a_h) - ln q(a_h) if nu = 1, -ln(1 - p) if nu = 0 */
  MILE_IV_REFERENCE = 2, /* NLL of the categorical [pi_h(a) p for each a, 1 - p] */
  MILE_IV_LOSS_COUNT
} mile_iv_loss;

/* "paper", "joint", "reference". */
MILE_API const char *mile_iv_loss_name(mile_iv_loss variant);

/* The batch loss from per-sample quantities, all [B] of one dtype: log_p = ln p(s),
 * log1m_p = ln(1 - p(s)), log_pi = ln pi_h(a_h | s) at the observed human action,
 * log_q = ln q(a_h, s) (read by `joint` only; may be NULL for the others), nu the
 * 0/1 intervention flags (any other value, 2 or NaN say, is MILE_ERR_ARGUMENT naming the
 * first such sample; lambda outside [0, 1] is MILE_ERR_ARGUMENT too). *out gets a new [3]
 * tensor (loss, j1, j2), differentiable in the four float inputs:
 *   paper:     j1 = mean_b -[nu ln p + (1-nu) ln(1-p)], j2 = mean over the samples
 *              with nu = 1 of -ln pi_h(a_h) (0 when there are none),
 *              loss = lambda j1 + (1 - lambda) j2;
 *   joint:     j1 = mean_b [nu (-ln q(a_h)) + (1-nu)(-ln(1-p))], j2 = mean_b nu (-ln pi_h(a_h)),
 *              loss = j1 + j2 (the exact negative log-likelihood per sample, averaged);
 *   reference: j1 = the paper's j1, j2 = mean_b nu (-ln pi_h(a_h)), loss = j1 + j2.
 * lambda is read by `paper` only. Inputs without requires_grad get no gradient. */
MILE_API mile_status mile_intervention_loss(mile_tensor **out, mile_iv_loss variant, double lambda,
                                            mile_tensor *log_p, mile_tensor *log1m_p, mile_tensor *log_pi,
                                            mile_tensor *log_q, mile_tensor *nu);

/* ln pi_h(a) or ln q(a) at the observed actions: out[b] = matrix[b, offset + a[b]] for a
 * [B, n] matrix (the packed discrete output) and 0-based action values a ([B] or [B, 1]).
 * Rows with nu[b] = 0 (nu may be NULL) read column `offset` whatever a[b] holds (their
 * terms are unused); with check, every other a[b] must be an integer in 0..width-1
 * (MILE_ERR_ARGUMENT naming the first bad sample, 1-based). Differentiable in matrix. */
MILE_API mile_status mile_take_actions(mile_tensor **out, mile_tensor *matrix, mile_tensor *actions, mile_tensor *nu,
                                       int64_t offset, int64_t width, int32_t check);

/* MILE_OK when every element of the [B, D] actions is finite; otherwise
 * MILE_ERR_ARGUMENT "human_action must be finite on intervention steps: sample b,
 * dimension d" naming the first bad one (1-based). Callers replace the rows without an
 * intervention first. A check, not an op: nothing is made. */
MILE_API mile_status mile_check_finite_actions(const mile_tensor *actions);

#endif
