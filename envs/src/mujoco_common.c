/* mujoco_common.c - the shared half of the MuJoCo manipulation tasks: model loading,
 * MuJoCo's error handlers, the mocap-driven gripper, Meta-World's observation and
 * reward helpers (ENVS.md 2.1-2.5, 2.9). */
#include "mujoco_common.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The gripper points down: Meta-World writes mocap_quat = [1, 0, 1, 0] every step. */
static const double hand_quat[4] = {0.7071067811865476, 0, 0.7071067811865476, 0};
/* Meta-World's hand box for all three tasks; the mocap never leaves it. */
static const double hand_low[3] = {-0.5, 0.40, 0.05};
static const double hand_high[3] = {0.5, 1.0, 0.5};
/* The observation's hand bounds (wider than the hand box). */
static const double obs_hand_low[3] = {-0.525, 0.348, -0.0525};
static const double obs_hand_high[3] = {0.525, 1.025, 0.7};
static const double action_scale = 0.01; /* metres of mocap motion per unit action */
/* Meta-World's hand settles 5 mm below its mocap target (measured, ENVS.md 2.2: the arm
 * hangs on the weld); our arm-less hand gets that offset from the weld itself, so that
 * the hand reaches the same lowest point (z = 0.045) the peg expert's grasp test needs. */
static const double hand_sag = 0.005;

/* --- MuJoCo's error and warning handlers ------------------------------------------
 * MuJoCo's default handlers print and exit(). Ours record the message and, while a
 * mile call is inside MuJoCo (mile_mj_trapped), jump back to it; the jump only crosses
 * MuJoCo's C engine code, never C++ frames (mj_loadXML reports through its buffer). */

static _Thread_local jmp_buf *trap;
static _Thread_local char mj_error_text[512];
static _Thread_local char mj_warning_text[512];

static void on_mujoco_error(const char *msg) {
  snprintf(mj_error_text, sizeof mj_error_text, "%s", msg);
  if (trap != NULL) longjmp(*trap, 1);
}

static void on_mujoco_warning(const char *msg) { snprintf(mj_warning_text, sizeof mj_warning_text, "%s", msg); }

static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void install_handlers(void) {
  mju_user_error = on_mujoco_error;
  mju_user_warning = on_mujoco_warning;
}

mile_env_status mile_mj_trapped(mile_mj *mj, void (*fn)(void *arg), void *arg, const char *what) {
  jmp_buf here;
  jmp_buf *volatile outer = trap;
  const int stack_mark = mj->d != NULL ? mj->d->pstack : 0;
  if (setjmp(here) != 0) {
    trap = outer;
    /* the jump skipped MuJoCo's own release of its scratch stack */
    if (mj->d != NULL) mj->d->pstack = stack_mark;
    return mile_env_error(MILE_ENV_ERR_SIM, "%s: MuJoCo failed while %s: %s", mj->task_name, what, mj_error_text);
  }
  trap = &here;
  fn(arg);
  trap = outer;
  return MILE_ENV_OK;
}

/* --- helpers ------------------------------------------------------------------------ */

double mile_mj_clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

double mile_mj_norm3(const double a[3]) { return sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]); }

double mile_mj_dist3(const double a[3], const double b[3]) {
  double d[3] = {a[0] - b[0], a[1] - b[1], a[2] - b[2]};
  return mile_mj_norm3(d);
}

double mile_mj_tolerance(double x, double lo, double hi, double margin) {
  if (lo <= x && x <= hi) return 1.0;
  if (!(margin > 0)) return 0.0; /* dm_control: margin 0 means "inside bounds or nothing" */
  double d = (x < lo ? lo - x : x - hi) / margin;
  double scaled = d * 3.0; /* sqrt(1 / value_at_margin - 1) with value_at_margin = 0.1 */
  return 1.0 / (scaled * scaled + 1.0);
}

double mile_mj_hamacher(double a, double b) {
  double denominator = a + b - a * b;
  return denominator > 0 ? a * b / denominator : 0.0;
}

double mile_mj_rect_prism_tolerance(const double curr[3], const double zero[3], const double one[3]) {
  for (int i = 0; i < 3; i++) {
    double lo = fmin(zero[i], one[i]), hi = fmax(zero[i], one[i]);
    if (!(lo <= curr[i] && curr[i] <= hi)) return 1.0;
  }
  double product = 1.0;
  for (int i = 0; i < 3; i++) product *= (curr[i] - zero[i]) / (one[i] - zero[i]);
  return product;
}

void mile_mj_tcp_center(const mile_mj *mj, double out[3]) {
  const double *r = mj->d->site_xpos + 3 * mj->tip_right, *l = mj->d->site_xpos + 3 * mj->tip_left;
  for (int i = 0; i < 3; i++) out[i] = 0.5 * (r[i] + l[i]);
}

static mile_env_status find_id(const mile_mj *mj, int type, const char *kind, const char *name, int *id) {
  *id = mj_name2id(mj->m, type, name);
  if (*id < 0)
    return mile_env_error(MILE_ENV_ERR_IO, "%s: the model has no %s named '%s'", mj->task_name, kind, name);
  return MILE_ENV_OK;
}

mile_env_status mile_mj_body(const mile_mj *mj, const char *name, int *id) {
  return find_id(mj, mjOBJ_BODY, "body", name, id);
}

mile_env_status mile_mj_site(const mile_mj *mj, const char *name, int *id) {
  return find_id(mj, mjOBJ_SITE, "site", name, id);
}

/* --- create / destroy --------------------------------------------------------------- */

static void make_data(void *arg) {
  mile_mj *mj = arg;
  mj->d = mj_makeData(mj->m);
}

/* Find the gripper's parts and weld the hand to the mocap body with an explicit pose. */
static mile_env_status setup_gripper(mile_mj *mj, double torquescale) {
  mile_env_status status;
  int mocap_body, weld;
  if ((status = mile_mj_body(mj, "hand", &mj->hand)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(mj, "rightclaw", &mj->rightclaw)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(mj, "leftclaw", &mj->leftclaw)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(mj, "mocap", &mocap_body)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_site(mj, "rightEndEffector", &mj->tip_right)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_site(mj, "leftEndEffector", &mj->tip_left)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_site(mj, "goal", &mj->goal_site)) != MILE_ENV_OK) return status;
  if ((status = find_id(mj, mjOBJ_ACTUATOR, "actuator", "r_close_act", &mj->act_right)) != MILE_ENV_OK) return status;
  if ((status = find_id(mj, mjOBJ_ACTUATOR, "actuator", "l_close_act", &mj->act_left)) != MILE_ENV_OK) return status;
  if ((status = find_id(mj, mjOBJ_EQUALITY, "weld", "mocap_weld", &weld)) != MILE_ENV_OK) return status;
  mj->mocap = mj->m->body_mocapid[mocap_body];
  if (mj->mocap < 0 || mj->m->jnt_type[mj->m->body_jntadr[mj->hand]] != mjJNT_FREE)
    return mile_env_error(MILE_ENV_ERR_IO, "%s: body 'mocap' must be a mocap body and 'hand' must float",
                          mj->task_name);

  /* MuJoCo 2.2.2's weld data: anchor (body2 frame), relative position (body1 frame),
   * relative quaternion, torquescale. Set explicitly: left alone, the compiler derives
   * an offset from qpos0 (ENVS.md 4.4). The mocap frame's +x points down. */
  mjtNum *data = mj->m->eq_data + mjNEQDATA * weld;
  memset(data, 0, mjNEQDATA * sizeof *data);
  data[3] = hand_sag;
  data[6] = 1.0;
  data[10] = torquescale;
  return MILE_ENV_OK;
}

static void set_spaces(mile_env *env, const double goal_low[3], const double goal_high[3]) {
  mile_env_space *o = &env->obs_space, *a = &env->act_space;
  o->discrete = 0;
  o->n = MILE_MJ_OBS_DIM;
  for (int f = 0; f < 2; f++) { /* current and previous frame */
    double *lo = o->low + f * MILE_MJ_FRAME_DIM, *hi = o->high + f * MILE_MJ_FRAME_DIM;
    for (int i = 0; i < 3; i++) {
      lo[i] = obs_hand_low[i];
      hi[i] = obs_hand_high[i];
    }
    lo[3] = -1.0;
    hi[3] = 1.0;
    for (int i = 4; i < MILE_MJ_FRAME_DIM; i++) {
      lo[i] = -INFINITY;
      hi[i] = INFINITY;
    }
  }
  for (int i = 0; i < 3; i++) {
    o->low[2 * MILE_MJ_FRAME_DIM + i] = goal_low[i];
    o->high[2 * MILE_MJ_FRAME_DIM + i] = goal_high[i];
  }
  a->discrete = 0;
  a->n = MILE_MJ_ACT_DIM;
  for (int i = 0; i < MILE_MJ_ACT_DIM; i++) {
    a->low[i] = -1.0;
    a->high[i] = 1.0;
  }
  env->max_episode_steps = MILE_MJ_MAX_STEPS;
}

static void place_hand(mile_mj *mj) {
  const mjModel *m = mj->m;
  mjData *d = mj->d;
  mjtNum *q = d->qpos + m->jnt_qposadr[m->body_jntadr[mj->hand]];
  q[0] = mj->hand_init[0];
  q[1] = mj->hand_init[1];
  q[2] = mj->hand_init[2] - hand_sag;
  memcpy(q + 3, hand_quat, sizeof hand_quat);
  memcpy(d->mocap_pos + 3 * mj->mocap, mj->hand_init, 3 * sizeof(double));
  memcpy(d->mocap_quat + 4 * mj->mocap, hand_quat, sizeof hand_quat);
}

static void forward(void *arg) {
  mile_mj *mj = arg;
  mj_forward(mj->m, mj->d);
}

mile_env_status mile_mj_create(mile_env *env, mile_env_options *opts, size_t impl_size, const char *model_file,
                               const double hand_init[3], const double goal_low[3], const double goal_high[3]) {
  double torquescale;
  mile_env_status status = mile_env_option_double(opts, "torquescale", 5.0, &torquescale);
  if (status != MILE_ENV_OK) return status;
  if (!(torquescale > 0))
    return mile_env_error(MILE_ENV_ERR_ARGUMENT, "%s: torquescale=%g must be > 0", env->task->name, torquescale);

  mile_mj *mj = calloc(1, impl_size);
  if (mj == NULL) return mile_env_error(MILE_ENV_ERR_NOMEM, "out of memory creating %s", env->task->name);
  env->impl = mj;
  mj->task_name = env->task->name;
  memcpy(mj->hand_init, hand_init, sizeof mj->hand_init);
  pthread_once(&handlers_once, install_handlers);

  char path[4096];
  if ((status = mile_env_model_path(model_file, path, sizeof path)) != MILE_ENV_OK) return status;
  char error[1024] = "";
  mj_error_text[0] = '\0';
  mj->m = mj_loadXML(path, NULL, error, sizeof error);
  /* MuJoCo 2.2 leaves compiler warnings in the buffer on success: only NULL is a failure */
  if (mj->m == NULL)
    return mile_env_error(MILE_ENV_ERR_IO, "%s: cannot load %s: %s", mj->task_name, path,
                          error[0] ? error : mj_error_text[0] ? mj_error_text : "unknown MuJoCo error");
  if ((status = mile_mj_trapped(mj, make_data, mj, "allocating its data")) != MILE_ENV_OK) return status;
  if (mj->d == NULL) return mile_env_error(MILE_ENV_ERR_NOMEM, "%s: MuJoCo could not allocate its data", mj->task_name);
  if ((status = setup_gripper(mj, torquescale)) != MILE_ENV_OK) return status;
  set_spaces(env, goal_low, goal_high);

  place_hand(mj);
  return mile_mj_trapped(mj, forward, mj, "computing the initial pose");
}

void mile_mj_destroy(mile_env *env) {
  mile_mj *mj = env->impl;
  if (mj == NULL) return;
  mile_mj_gl_free(mj->render);
  if (mj->d != NULL) mj_deleteData(mj->d);
  if (mj->m != NULL) mj_deleteModel(mj->m);
  free(mj);
  env->impl = NULL;
}

/* --- simulation --------------------------------------------------------------------- */

/* Warnings after which the state is not worth continuing from: MuJoCo resets the data
 * on a bad acceleration, or dropped contacts/constraints for lack of room. */
static mile_env_status check_warnings(mile_mj *mj) {
  static const struct {
    int id;
    const char *what;
  } fatal[] = {{mjWARN_BADQPOS, "bad number in qpos"},
               {mjWARN_BADQVEL, "bad number in qvel"},
               {mjWARN_BADQACC, "bad number in qacc (the simulation became unstable)"},
               {mjWARN_CONTACTFULL, "too many contacts"},
               {mjWARN_CNSTRFULL, "too many constraints"}};
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
    if (mj->d->warning[fatal[i].id].number > 0) {
      mj_resetData(mj->m, mj->d);
      return mile_env_error(MILE_ENV_ERR_SIM, "%s: MuJoCo: %s%s%s; reset the env", mj->task_name, fatal[i].what,
                            mj_warning_text[0] ? ": " : "", mj_warning_text);
    }
  }
  return MILE_ENV_OK;
}

static void substeps(void *arg) {
  mile_mj *mj = arg;
  for (int i = 0; i < MILE_MJ_FRAME_SKIP; i++) mj_step(mj->m, mj->d);
  /* mj_step leaves positions of the state before its last integration: refresh them
   * for the observation (kinematics is all the observation and reward read) */
  mj_kinematics(mj->m, mj->d);
}

static mile_env_status simulate(mile_mj *mj, const char *what) {
  mj_warning_text[0] = '\0';
  mile_env_status status = mile_mj_trapped(mj, substeps, mj, what);
  return status != MILE_ENV_OK ? status : check_warnings(mj);
}

mile_env_status mile_mj_reset_hand(mile_mj *mj) {
  mj_resetData(mj->m, mj->d);
  place_hand(mj);
  mjtNum *ctrl = mj->d->ctrl;
  for (int i = 0; i < MILE_MJ_HAND_RESET_STEPS; i++) {
    memcpy(mj->d->mocap_pos + 3 * mj->mocap, mj->hand_init, 3 * sizeof(double));
    memcpy(mj->d->mocap_quat + 4 * mj->mocap, hand_quat, sizeof hand_quat);
    ctrl[mj->act_right] = -1.0; /* effort -1: open */
    ctrl[mj->act_left] = 1.0;
    mile_env_status status = simulate(mj, "resetting the hand");
    if (status != MILE_ENV_OK) return status;
  }
  return MILE_ENV_OK;
}

mile_env_status mile_mj_reset_finish(mile_mj *mj, const double goal[3]) {
  memcpy(mj->goal, goal, sizeof mj->goal);
  /* the goal site hangs in the world body: its model position is its world position */
  memcpy(mj->m->site_pos + 3 * mj->goal_site, goal, 3 * sizeof(double));
  mile_env_status status = mile_mj_trapped(mj, forward, mj, "placing the objects");
  if (status == MILE_ENV_OK) status = check_warnings(mj);
  if (status != MILE_ENV_OK) return status;
  mile_mj_tcp_center(mj, mj->init_tcp);
  return MILE_ENV_OK;
}

mile_env_status mile_mj_advance(mile_mj *mj, const double *action) {
  mjData *d = mj->d;
  double *mocap = d->mocap_pos + 3 * mj->mocap;
  /* the delta moves the mocap target, not the hand: a blocked hand lets the target run
   * ahead, which is what pushes the drawer and button past their soft limits */
  for (int i = 0; i < 3; i++)
    mocap[i] = mile_mj_clip(mocap[i] + action_scale * mile_mj_clip(action[i], -1.0, 1.0), hand_low[i], hand_high[i]);
  memcpy(d->mocap_quat + 4 * mj->mocap, hand_quat, sizeof hand_quat);
  double effort = mile_mj_clip(action[3], -1.0, 1.0);
  d->ctrl[mj->act_right] = effort;
  d->ctrl[mj->act_left] = -effort;
  return simulate(mj, "stepping");
}

void mile_mj_observe(mile_env *env, const double obj_pos[3], const double obj_quat[4], int first, double *obs) {
  mile_mj *mj = env->impl;
  const mjData *d = mj->d;
  double frame[MILE_MJ_FRAME_DIM] = {0};
  memcpy(frame, d->xpos + 3 * mj->hand, 3 * sizeof(double));
  double claws = mile_mj_dist3(d->xpos + 3 * mj->rightclaw, d->xpos + 3 * mj->leftclaw);
  frame[3] = mile_mj_clip(claws / 0.1, 0.0, 1.0);
  memcpy(frame + 4, obj_pos, 3 * sizeof(double));
  memcpy(frame + 7, obj_quat, 4 * sizeof(double));
  if (first) memcpy(mj->prev, frame, sizeof frame);

  memcpy(obs, frame, sizeof frame);
  memcpy(obs + MILE_MJ_FRAME_DIM, mj->prev, sizeof frame);
  memcpy(obs + 2 * MILE_MJ_FRAME_DIM, mj->goal, 3 * sizeof(double));
  const mile_env_space *space = &env->obs_space;
  for (int i = 0; i < MILE_MJ_OBS_DIM; i++) obs[i] = mile_mj_clip(obs[i], space->low[i], space->high[i]);
  memcpy(mj->prev, frame, sizeof frame);
}
