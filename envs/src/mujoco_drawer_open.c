/* mujoco_drawer_open.c - drawer-open-v3: pull a drawer open by its handle.
 * Reset, observation, reward, success rule and scripted expert of Meta-World's
 * SawyerDrawerOpenEnvV3 / SawyerDrawerOpenV2Policy (ENVS.md 2.6, 2.10). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mujoco_common.h"

static const double hand_init[3] = {0.0, 0.6, 0.2};
static const double max_dist = 0.2;       /* how far the handle travels to the goal */
static const double success_radius = 0.03; /* handle within 3 cm of the goal */

typedef struct drawer_task {
  mile_mj mj; /* first: env->impl is also a mile_mj */
  int drawer, drawer_link; /* body ids */
  double drawer_default[3]; /* the model's drawer position, restored before each hand reset */
  double target[3];
} drawer_task;

static mile_env_status drawer_create(mile_env *env, mile_env_options *opts) {
  static const double goal_low[3] = {-0.5, 0.40, 0.05}, goal_high[3] = {0.5, 1.0, 0.5}; /* the hand box */
  mile_env_status status =
      mile_mj_create(env, opts, sizeof(drawer_task), "drawer_open.xml", hand_init, goal_low, goal_high);
  if (status != MILE_ENV_OK) return status;
  drawer_task *t = env->impl;
  if ((status = mile_mj_body(&t->mj, "drawer", &t->drawer)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(&t->mj, "drawer_link", &t->drawer_link)) != MILE_ENV_OK) return status;
  memcpy(t->drawer_default, t->mj.m->body_pos + 3 * t->drawer, sizeof t->drawer_default);
  return MILE_ENV_OK;
}

/* The handle point Meta-World observes: 16 cm in front of the drawer body. */
static void handle_pose(const drawer_task *t, double pos[3], double quat[4]) {
  const mjData *d = t->mj.d;
  memcpy(pos, d->xpos + 3 * t->drawer_link, 3 * sizeof(double));
  pos[1] -= 0.16;
  memcpy(quat, d->xquat + 4 * t->drawer_link, 4 * sizeof(double));
}

static mile_env_status drawer_reset(mile_env *env, double *obs) {
  drawer_task *t = env->impl;
  mjModel *m = t->mj.m;
  /* the hand reset runs with the drawer where the model has it, so that an episode does
   * not depend on where the previous one left it */
  memcpy(m->body_pos + 3 * t->drawer, t->drawer_default, sizeof t->drawer_default);
  mile_env_status status = mile_mj_reset_hand(&t->mj);
  if (status != MILE_ENV_OK) return status;

  double obj_init[3] = {mile_env_rng_uniform(&env->rng, -0.1, 0.1), 0.9, 0.0};
  memcpy(m->body_pos + 3 * t->drawer, obj_init, sizeof obj_init);
  t->target[0] = obj_init[0];
  t->target[1] = obj_init[1] - 0.16 - max_dist;
  t->target[2] = obj_init[2] + 0.09;
  if ((status = mile_mj_reset_finish(&t->mj, t->target)) != MILE_ENV_OK) return status;

  double pos[3], quat[4];
  handle_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 1, obs);
  return MILE_ENV_OK;
}

/* Meta-World's "v2" reward: reach the handle (caging) + bring it to the goal (opening). */
static double drawer_reward(const drawer_task *t, const double *obs) {
  const double *hand = obs, *handle = obs + 4;
  double handle_error = mile_mj_dist3(handle, t->target);
  double opening = mile_mj_tolerance(handle_error, 0.0, 0.02, max_dist);
  static const double scale[3] = {3.0, 3.0, 1.0};
  double handle_init[3] = {t->target[0], t->target[1] + max_dist, t->target[2]};
  double error[3], error_init[3];
  for (int i = 0; i < 3; i++) {
    error[i] = (handle[i] - hand[i]) * scale[i];
    error_init[i] = (handle_init[i] - t->mj.init_tcp[i]) * scale[i];
  }
  double caging = mile_mj_tolerance(mile_mj_norm3(error), 0.0, 0.01, mile_mj_norm3(error_init));
  return 5.0 * (caging + opening);
}

static mile_env_status drawer_step(mile_env *env, const double *action, double *obs, mile_env_step_result *result) {
  drawer_task *t = env->impl;
  mile_env_status status = mile_mj_advance(&t->mj, action);
  if (status != MILE_ENV_OK) return status;
  double pos[3], quat[4];
  handle_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 0, obs);
  result->reward = drawer_reward(t, obs);
  result->success = mile_mj_dist3(obs + 4, t->target) <= success_radius;
  result->truncated = env->steps + 1 >= MILE_MJ_MAX_STEPS;
  return MILE_ENV_OK;
}

/* SawyerDrawerOpenV2Policy: above the handle, down to it, then pull toward the robot
 * hard (p = 50) with the gripper open, so the back claw hooks the handle bar. */
static mile_env_status drawer_expert(mile_env *env, const double *obs, double *action) {
  const double *hand = obs, *obj = obs + 4;
  double drawer[3] = {obj[0], obj[1], obj[2] - 0.02};
  double to[3];
  double p = 4.0;
  double dxy = hypot(hand[0] - drawer[0], hand[1] - drawer[1]);
  if (dxy > 0.06) {
    to[0] = drawer[0], to[1] = drawer[1], to[2] = drawer[2] + 0.3;
  } else if (fabs(hand[2] - drawer[2]) > 0.04) {
    to[0] = drawer[0], to[1] = drawer[1], to[2] = drawer[2];
  } else {
    to[0] = drawer[0], to[1] = drawer[1] - 0.06, to[2] = drawer[2];
    p = 50.0;
  }
  for (int i = 0; i < 3; i++) action[i] = mile_mj_clip(p * (to[i] - hand[i]), -1.0, 1.0);
  action[3] = -1.0;
  (void)env;
  return MILE_ENV_OK;
}

const mile_env_task mile_task_drawer_open = {
    .name = "drawer-open-v3",
    .create = drawer_create,
    .destroy = mile_mj_destroy,
    .reset = drawer_reset,
    .step = drawer_step,
    .expert_act = drawer_expert,
    .render = mile_mj_render,
};
