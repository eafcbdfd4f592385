/* env.c - the task-independent half of mile/env.h: errors, options, argument and
 * state checks, the env's random generator and model-file lookup. Tasks only see
 * validated input (env_internal.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env_internal.h"

/* --- errors ---------------------------------------------------------------- */

static _Thread_local char last_error[512];

const char *mile_env_last_error(void) { return last_error; }

mile_env_status mile_env_error(mile_env_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}

/* --- options: "key=value,key=value" ----------------------------------------- */

enum { MAX_OPTIONS = 32, MAX_KNOWN_KEYS = 32 };

struct mile_env_options {
  char *text; /* a copy of the option string, cut in place into keys and values */
  int32_t count;
  const char *key[MAX_OPTIONS];
  const char *value[MAX_OPTIONS];
  int32_t used[MAX_OPTIONS];
  /* keys the task asked for, to name them when the user misspells one */
  int32_t known_count;
  const char *known[MAX_KNOWN_KEYS];
};

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  return s;
}

static mile_env_status options_parse(mile_env_options *opts, const char *text) {
  memset(opts, 0, sizeof *opts);
  if (text == NULL)
    return MILE_ENV_OK;
  size_t len = strlen(text);
  opts->text = malloc(len + 1);
  if (opts->text == NULL)
    return mile_env_error(MILE_ENV_ERR_NOMEM, "out of memory parsing options");
  memcpy(opts->text, text, len + 1);
  if (trim(opts->text)[0] == '\0')
    return MILE_ENV_OK;

  char *rest = opts->text;
  while (rest != NULL) {
    char *item = rest;
    char *comma = strchr(item, ',');
    rest = comma ? comma + 1 : NULL;
    if (comma)
      *comma = '\0';
    char *eq = strchr(item, '=');
    if (eq == NULL)
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "option '%s' is not of the form key=value", trim(item));
    *eq = '\0';
    char *key = trim(item), *value = trim(eq + 1);
    if (key[0] == '\0')
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "an option has an empty key");
    if (value[0] == '\0')
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "option '%s' has an empty value", key);
    for (int32_t i = 0; i < opts->count; i++)
      if (strcmp(opts->key[i], key) == 0)
        return mile_env_error(MILE_ENV_ERR_ARGUMENT, "option '%s' is given twice", key);
    if (opts->count == MAX_OPTIONS)
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "more than %d options", MAX_OPTIONS);
    opts->key[opts->count] = key;
    opts->value[opts->count] = value;
    opts->count++;
  }
  return MILE_ENV_OK;
}

static void options_free(mile_env_options *opts) {
  free(opts->text);
  opts->text = NULL;
}

/* The value given for key (marked used), or NULL; remembers the key as known. */
static const char *options_lookup(mile_env_options *opts, const char *key) {
  if (opts->known_count < MAX_KNOWN_KEYS)
    opts->known[opts->known_count++] = key;
  for (int32_t i = 0; i < opts->count; i++) {
    if (strcmp(opts->key[i], key) == 0) {
      opts->used[i] = 1;
      return opts->value[i];
    }
  }
  return NULL;
}

/* After the task's create: every given key must have been read. */
static mile_env_status options_check_all_used(const mile_env_options *opts, const char *task_name) {
  for (int32_t i = 0; i < opts->count; i++) {
    if (opts->used[i])
      continue;
    char known[256] = "";
    size_t n = 0;
    for (int32_t k = 0; k < opts->known_count && n < sizeof known; k++)
      n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", k ? ", " : "", opts->known[k]);
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "unknown option '%s' for %s (known: %s)", opts->key[i], task_name,
                          opts->known_count ? known : "none");
  }
  return MILE_ENV_OK;
}

mile_env_status mile_env_option_double(mile_env_options *opts, const char *key, double def, double *out) {
  const char *text = options_lookup(opts, key);
  *out = def;
  if (text == NULL)
    return MILE_ENV_OK;
  char *end;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || !isfinite(v))
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "option %s=%s: expected a finite number", key, text);
  *out = v;
  return MILE_ENV_OK;
}

mile_env_status mile_env_option_int(mile_env_options *opts, const char *key, int64_t def, int64_t *out) {
  const char *text = options_lookup(opts, key);
  *out = def;
  if (text == NULL)
    return MILE_ENV_OK;
  /* booleans arrive as true/false from Lua tables */
  if (strcmp(text, "true") == 0) {
    *out = 1;
    return MILE_ENV_OK;
  }
  if (strcmp(text, "false") == 0) {
    *out = 0;
    return MILE_ENV_OK;
  }
  char *end;
  long long v = strtoll(text, &end, 10);
  if (end == text || *end != '\0')
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "option %s=%s: expected an integer", key, text);
  *out = (int64_t)v;
  return MILE_ENV_OK;
}

/* --- random numbers: splitmix64 seeds xoshiro256** ------------------------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void rng_seed(mile_env_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mile_env_rng_next(mile_env_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* 53 random bits: a double in [0, 1). */
static double rng_unit(mile_env_rng *rng) { return (double)(mile_env_rng_next(rng) >> 11) * 0x1.0p-53; }

double mile_env_rng_uniform(mile_env_rng *rng, double lo, double hi) { return lo + (hi - lo) * rng_unit(rng); }

/* Box-Muller, one value per call (no cached second value: the stream stays a plain
 * function of the number of draws). */
double mile_env_rng_normal(mile_env_rng *rng) {
  double u1 = 1.0 - rng_unit(rng); /* (0, 1]: log stays finite */
  double u2 = rng_unit(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t mile_env_rng_integers(mile_env_rng *rng, int64_t lo, int64_t hi) {
  if (hi <= lo)
    return lo;
  uint64_t range = (uint64_t)hi - (uint64_t)lo;
  /* reject the low 2^64 mod range values so every residue is equally likely */
  uint64_t threshold = (0 - range) % range;
  for (;;) {
    uint64_t x = mile_env_rng_next(rng);
    if (x >= threshold)
      return (int64_t)((uint64_t)lo + x % range);
  }
}

/* --- model files ----------------------------------------------------------- */

static int file_readable(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0;
  fclose(f);
  return 1;
}

mile_env_status mile_env_model_path(const char *file, char *buf, size_t size) {
  /* $MILE_MODEL_DIR first (a user's own models), then the source tree (running from
   * a build directory), then the installed data directory */
  const char *dirs[3] = {getenv("MILE_MODEL_DIR"), MILE_ENVS_MODEL_DIR_BUILD, MILE_ENVS_MODEL_DIR_INSTALL};
  for (int i = 0; i < 3; i++) {
    if (dirs[i] == NULL || dirs[i][0] == '\0')
      continue;
    int n = snprintf(buf, size, "%s/%s", dirs[i], file);
    if (n < 0 || (size_t)n >= size)
      return mile_env_error(MILE_ENV_ERR_IO, "model path for '%s' is too long", file);
    if (file_readable(buf))
      return MILE_ENV_OK;
  }
  if (size > 0)
    buf[0] = '\0';
  return mile_env_error(MILE_ENV_ERR_IO, "model file '%s' not found in $MILE_MODEL_DIR (%s), %s or %s", file,
                        dirs[0] ? dirs[0] : "unset", MILE_ENVS_MODEL_DIR_BUILD, MILE_ENVS_MODEL_DIR_INSTALL);
}

/* --- the public interface -------------------------------------------------- */

enum { STATE_NEEDS_RESET = 0, STATE_RUNNING = 1, STATE_EPISODE_OVER = 2 };
enum { MAX_RENDER_SIDE = 4096 };

const char *mile_env_name_at(int32_t i) {
  const mile_env_task *task = i >= 0 ? mile_env_task_at(i) : NULL;
  return task ? task->name : NULL;
}

static const mile_env_task *find_task(const char *name) {
  for (int32_t i = 0; mile_env_task_at(i) != NULL; i++)
    if (strcmp(mile_env_task_at(i)->name, name) == 0)
      return mile_env_task_at(i);
  return NULL;
}

static mile_env_status unknown_name_error(const char *name) {
  char names[384] = "";
  size_t n = 0;
  for (int32_t i = 0; mile_env_task_at(i) != NULL && n < sizeof names; i++)
    n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? ", " : "", mile_env_task_at(i)->name);
  return mile_env_error(MILE_ENV_ERR_ARGUMENT, "unknown env '%s' (registered: %s)", name, names);
}

static int space_is_valid(const mile_env_space *space) { return space->n >= 1 && space->n <= MILE_ENV_MAX_DIMS; }

mile_env_status mile_env_create(mile_env **out, const char *name, const char *options) {
  if (out == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_create: out is NULL");
  *out = NULL;
  if (name == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_create: name is NULL");
  const mile_env_task *task = find_task(name);
  if (task == NULL)
    return unknown_name_error(name);

  mile_env_options opts;
  mile_env_status status = options_parse(&opts, options);
  if (status != MILE_ENV_OK) {
    options_free(&opts);
    return status;
  }
  mile_env *env = calloc(1, sizeof *env);
  if (env == NULL) {
    options_free(&opts);
    return mile_env_error(MILE_ENV_ERR_NOMEM, "out of memory creating %s", name);
  }
  env->task = task;
  status = task->create(env, &opts);
  if (status == MILE_ENV_OK)
    status = options_check_all_used(&opts, task->name);
  if (status == MILE_ENV_OK &&
      (!space_is_valid(&env->obs_space) || env->obs_space.discrete || !space_is_valid(&env->act_space)))
    status = mile_env_error(MILE_ENV_ERR_SIM, "%s: the task declared invalid spaces", task->name);
  options_free(&opts);
  if (status != MILE_ENV_OK) {
    mile_env_destroy(env);
    return status;
  }
  *out = env;
  return MILE_ENV_OK;
}

void mile_env_destroy(mile_env *env) {
  if (env == NULL)
    return;
  env->task->destroy(env);
  free(env);
}

const char *mile_env_name(const mile_env *env) { return env ? env->task->name : NULL; }

int32_t mile_env_observation_dim(const mile_env *env) { return env ? env->obs_space.n : 0; }

void mile_env_observation_space(const mile_env *env, mile_env_space *space) {
  if (env && space)
    *space = env->obs_space;
}

void mile_env_action_space(const mile_env *env, mile_env_space *space) {
  if (env && space)
    *space = env->act_space;
}

int32_t mile_env_action_size(const mile_env *env) {
  if (env == NULL)
    return 0;
  return env->act_space.discrete ? 1 : env->act_space.n;
}

int32_t mile_env_max_episode_steps(const mile_env *env) { return env ? env->max_episode_steps : 0; }

mile_env_status mile_env_reset(mile_env *env, uint64_t seed, double *obs) {
  if (env == NULL || obs == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_reset: %s is NULL", env ? "obs" : "env");
  rng_seed(&env->rng, seed);
  env->steps = 0;
  env->state = STATE_NEEDS_RESET;
  mile_env_status status = env->task->reset(env, obs);
  if (status == MILE_ENV_OK)
    env->state = STATE_RUNNING;
  return status;
}

/* The action as the task expects it: the right size, finite, and for a discrete
 * space an integer 0..n-1. */
static mile_env_status check_action(const mile_env *env, const double *action, int32_t action_size, const char *what) {
  const mile_env_space *space = &env->act_space;
  const char *name = env->task->name;
  int32_t expected = mile_env_action_size(env);
  if (action_size != expected)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s has %d values, %s expects %d", what, (int)action_size, name,
                          (int)expected);
  for (int32_t i = 0; i < expected; i++) {
    if (!isfinite(action[i]))
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s[%d] is %s; %s needs finite actions", what, (int)i + 1,
                            isnan(action[i]) ? "NaN" : "infinite", name);
  }
  if (space->discrete) {
    double a = action[0];
    if (a != floor(a) || a < 0 || a >= space->n)
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s %.17g is not one of %s's actions 0..%d", what, a, name,
                            (int)space->n - 1);
  }
  return MILE_ENV_OK;
}

mile_env_status mile_env_step(mile_env *env, const double *action, int32_t action_size, double *obs,
                              mile_env_step_result *result) {
  if (env == NULL || action == NULL || obs == NULL || result == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_step: %s is NULL",
                          env == NULL      ? "env"
                          : action == NULL ? "action"
                          : obs == NULL    ? "obs"
                                           : "result");
  if (env->state == STATE_NEEDS_RESET)
    return mile_env_error(MILE_ENV_ERR_STATE, "%s: step called before reset", env->task->name);
  if (env->state == STATE_EPISODE_OVER)
    return mile_env_error(MILE_ENV_ERR_STATE,
                          "%s: step called after the episode ended (terminated or truncated); "
                          "call reset",
                          env->task->name);
  mile_env_status status = check_action(env, action, action_size, "action");
  if (status != MILE_ENV_OK)
    return status;

  memset(result, 0, sizeof *result);
  status = env->task->step(env, action, obs, result);
  if (status != MILE_ENV_OK) {
    env->state = STATE_NEEDS_RESET;
    return status;
  }
  env->steps++;
  if (result->terminated || result->truncated)
    env->state = STATE_EPISODE_OVER;
  return MILE_ENV_OK;
}

mile_env_status mile_env_expert_act(mile_env *env, const double *obs, double *action) {
  if (env == NULL || obs == NULL || action == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_expert_act: %s is NULL",
                          env == NULL   ? "env"
                          : obs == NULL ? "obs"
                                        : "action");
  for (int32_t i = 0; i < env->obs_space.n; i++)
    if (!isfinite(obs[i]))
      return mile_env_error(MILE_ENV_ERR_ARGUMENT, "expert: observation[%d] is not finite", (int)i + 1);
  if (env->task->expert_act == NULL)
    return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s has no scripted expert", env->task->name);
  return env->task->expert_act(env, obs, action);
}

mile_env_status mile_env_render(mile_env *env, uint8_t *rgb, int32_t width, int32_t height) {
  if (env == NULL || rgb == NULL)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "mile_env_render: %s is NULL", env ? "rgb" : "env");
  if (width < 1 || height < 1 || width > MAX_RENDER_SIDE || height > MAX_RENDER_SIDE)
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "render size %dx%d is outside 1..%d", (int)width, (int)height,
                          MAX_RENDER_SIDE);
  if (env->task->render == NULL)
    return mile_env_error(MILE_ENV_ERR_UNSUPPORTED, "%s cannot render", env->task->name);
  return env->task->render(env, rgb, width, height);
}
