/* env_internal.h - what a task implements, and the helpers env.c gives every task.
 *
 * Adding a task: one C (or C++) file defining a `const mile_env_task`, its model
 * file under envs/models/ when it has one, and one line in registry.c. */
#ifndef MILE_ENV_INTERNAL_H
#define MILE_ENV_INTERNAL_H

#include "mile/env.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mile_env_options mile_env_options; /* parsed "key=value,..." */

/* The env's own generator (xoshiro256**, seeded by mile_env_reset). */
typedef struct mile_env_rng { uint64_t s[4]; } mile_env_rng;

typedef struct mile_env_task {
  const char *name;
  /* Fill env->impl, env->obs_space, env->act_space, env->max_episode_steps from opts. */
  mile_env_status (*create)(mile_env *env, mile_env_options *opts);
  /* Free env->impl; also called on a half-created env (impl NULL or partly filled). */
  void (*destroy)(mile_env *env);
  /* env->rng is already seeded; write the first observation. */
  mile_env_status (*reset)(mile_env *env, double *obs);
  /* The action is validated (size, finite; discrete: an integer in range); a box
   * action may lie outside its bounds (the task clips). Set result->truncated only
   * when the task's own rules end the episode on time. */
  mile_env_status (*step)(mile_env *env, const double *action, double *obs, mile_env_step_result *result);
  mile_env_status (*expert_act)(mile_env *env, const double *obs, double *action);
  mile_env_status (*render)(mile_env *env, uint8_t *rgb, int32_t width, int32_t height); /* may be NULL */
} mile_env_task;

struct mile_env {
  const mile_env_task *task;
  void *impl;
  mile_env_space obs_space;
  mile_env_space act_space;
  int32_t max_episode_steps; /* 0: none */
  int32_t steps;             /* steps in this episode */
  int32_t state;             /* 0: needs reset, 1: running, 2: episode over */
  mile_env_rng rng;
};

/* The i-th registered task (registry.c), or NULL past the end. */
const mile_env_task *mile_env_task_at(int32_t i);

/* Set the thread's env error message (printf-style) and return status. */
mile_env_status mile_env_error(mile_env_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Options: read a value (the key is marked used); absent keys give the default.
 * A value that does not parse completely (or is not finite) is MILE_ENV_ERR_ARGUMENT.
 * Every key a task knows should be read in its create, even when the default wins:
 * the read keys are what the "unknown option" message lists as known. Integers also
 * accept "true" (1) and "false" (0), which is how Lua booleans arrive. */
mile_env_status mile_env_option_double(mile_env_options *opts, const char *key, double def, double *out);
mile_env_status mile_env_option_int(mile_env_options *opts, const char *key, int64_t def, int64_t *out);

/* Draws from env->rng. */
uint64_t mile_env_rng_next(mile_env_rng *rng);
double mile_env_rng_uniform(mile_env_rng *rng, double lo, double hi); /* [lo, hi) */
double mile_env_rng_normal(mile_env_rng *rng);                       /* standard normal */
int64_t mile_env_rng_integers(mile_env_rng *rng, int64_t lo, int64_t hi); /* [lo, hi) */

/* Path of a model file shipped with mile, written into buf: the first of
 * $MILE_MODEL_DIR/file, <source tree>/envs/models/file, <installed data dir>/models/file
 * that can be opened. MILE_ENV_ERR_IO (naming the places tried) when none can. */
mile_env_status mile_env_model_path(const char *file, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
