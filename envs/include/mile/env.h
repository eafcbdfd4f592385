/* mile/env.h - the C interface of mile's simulators (no dependency on the core or Lua).
 *
 * An env is created from a registered task name; it speaks double arrays. Every
 * random draw comes from the env's own generator, seeded by mile_env_reset, so the
 * same seed gives the same trajectory bit for bit on one build. Functions return
 * MILE_ENV_OK or an error status with a message readable by mile_env_last_error();
 * nothing here aborts, exits or prints. */
#ifndef MILE_ENV_H
#define MILE_ENV_H

#ifndef MILE_CDEF
#include <stddef.h>
#include <stdint.h>
#endif

#if defined(MILE_CDEF)
#define MILE_ENV_API
#elif defined(MILE_BUILDING_ENVS)
#define MILE_ENV_API __attribute__((visibility("default")))
#else
#define MILE_ENV_API
#endif

typedef enum mile_env_status {
  MILE_ENV_OK = 0,
  MILE_ENV_ERR_ARGUMENT = 1, /* unknown name or option, wrong action size, NaN in an action */
  MILE_ENV_ERR_STATE = 2,    /* step before reset, step after the episode ended */
  MILE_ENV_ERR_NOMEM = 3,
  MILE_ENV_ERR_IO = 4,       /* a model file could not be found or loaded */
  MILE_ENV_ERR_SIM = 5,      /* the simulator reported a failure (instability, ...) */
  MILE_ENV_ERR_UNSUPPORTED = 6 /* e.g. rendering without an offscreen GL context */
} mile_env_status;

enum { MILE_ENV_MAX_DIMS = 64 };

/* A box (continuous) or a set of n actions 0..n-1 (discrete). */
typedef struct mile_env_space {
  int32_t discrete;                 /* 1: n actions; 0: a box of n dims */
  int32_t n;
  double low[MILE_ENV_MAX_DIMS];    /* box bounds (unused when discrete) */
  double high[MILE_ENV_MAX_DIMS];
} mile_env_space;

typedef struct mile_env_step_result {
  double reward;
  int32_t terminated; /* the task ended (crash, landed at rest, ...) */
  int32_t truncated;  /* the env's own step limit was reached */
  int32_t success;    /* the task's success rule holds in this state */
} mile_env_step_result;

typedef struct mile_env mile_env; /* opaque */

/* The message of the last failure on this thread. Never NULL. */
MILE_ENV_API const char *mile_env_last_error(void);

/* Registered task names: i-th name, or NULL past the end. */
MILE_ENV_API const char *mile_env_name_at(int32_t i);

/* Create a task by name into *out (NULL on failure). options: "key=value,key=value",
 * "" or NULL (e.g. "enable_wind=1,wind_power=15"); an unknown key, a key given twice
 * or a value that does not parse is MILE_ENV_ERR_ARGUMENT, an unknown name too. */
MILE_ENV_API mile_env_status mile_env_create(mile_env **out, const char *name, const char *options);
/* NULL-safe. */
MILE_ENV_API void mile_env_destroy(mile_env *env);

MILE_ENV_API const char *mile_env_name(const mile_env *env);
MILE_ENV_API int32_t mile_env_observation_dim(const mile_env *env);
MILE_ENV_API void mile_env_observation_space(const mile_env *env, mile_env_space *space);
MILE_ENV_API void mile_env_action_space(const mile_env *env, mile_env_space *space);
/* Number of doubles in one action: 1 when discrete (the action number), else the box's n. */
MILE_ENV_API int32_t mile_env_action_size(const mile_env *env);
/* The episode step limit the task is registered with, like Gymnasium's
 * spec.max_episode_steps (LunarLander: 1000; 0: none). mile_env_step does not
 * enforce it: the Lua envs.make applies it with a TimeLimit wrapper, as gym.make
 * does. A task whose own rules end episodes (Meta-World: 500) reports truncated itself. */
MILE_ENV_API int32_t mile_env_max_episode_steps(const mile_env *env);

/* Start an episode from `seed`; writes observation_dim doubles into obs. */
MILE_ENV_API mile_env_status mile_env_reset(mile_env *env, uint64_t seed, double *obs);
/* Advance one step. action: action_size values, which must equal
 * mile_env_action_size(env): the action number (an integer 0..n-1) when discrete,
 * else n finite values (a box action is clipped to its bounds, as Gymnasium does).
 * Writes the next observation and the step's result. MILE_ENV_ERR_STATE before the
 * first reset and after a step that ended the episode (terminated or truncated);
 * MILE_ENV_ERR_ARGUMENT for a wrong size, NaN/Inf or a discrete value out of range.
 * A call refused for its arguments or the env's state leaves the env unchanged; after
 * any other failure the env needs a reset. */
MILE_ENV_API mile_env_status mile_env_step(mile_env *env, const double *action, int32_t action_size,
                                           double *obs, mile_env_step_result *result);

/* The scripted expert's action for observation obs (observation_dim doubles);
 * writes mile_env_action_size(env) doubles into action, ready for mile_env_step.
 * Needs no reset. MILE_ENV_ERR_ARGUMENT for a non-finite observation,
 * MILE_ENV_ERR_UNSUPPORTED for a task without an expert. */
MILE_ENV_API mile_env_status mile_env_expert_act(mile_env *env, const double *obs, double *action);

/* Draw the current state into rgb (width*height*3 bytes, row-major, top row first).
 * Before the first reset a task draws an empty scene. MILE_ENV_ERR_UNSUPPORTED when
 * the task cannot render; width and height must be 1..4096 (else MILE_ENV_ERR_ARGUMENT). */
MILE_ENV_API mile_env_status mile_env_render(mile_env *env, uint8_t *rgb, int32_t width, int32_t height);

#endif
