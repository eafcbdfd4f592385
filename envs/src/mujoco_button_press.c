/* mujoco_button_press.c - button-press-v3 (the front button): push a button into its box.
 * Reset, observation, reward, success rule and scripted expert of Meta-World's
 * SawyerButtonPressEnvV3 / SawyerButtonPressV2Policy (ENVS.md 2.7, 2.10). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mujoco_common.h"

static const double hand_init[3] = {0.0, 0.4, 0.2};
static const double success_radius = 0.02; /* button face within 2 cm of the goal along y */

typedef struct button_task {
  mile_mj mj; /* first: env->impl is also a mile_mj */
  int box, button; /* body ids */
  int qpos_adr, dof_adr; /* the button's slide joint */
  double box_default[3];
  double target[3];
  double obj_to_target_init; /* |goal.y - button start.y| = 0.0935 */
} button_task;

static mile_env_status button_create(mile_env *env, mile_env_options *opts) {
  static const double goal_low[3] = {-0.5, 0.40, 0.05}, goal_high[3] = {0.5, 1.0, 0.5}; /* the hand box */
  mile_env_status status =
      mile_mj_create(env, opts, sizeof(button_task), "button_press.xml", hand_init, goal_low, goal_high);
  if (status != MILE_ENV_OK) return status;
  button_task *t = env->impl;
  const mjModel *m = t->mj.m;
  if ((status = mile_mj_body(&t->mj, "box", &t->box)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(&t->mj, "button", &t->button)) != MILE_ENV_OK) return status;
  if (m->body_jntnum[t->button] != 1 || m->jnt_type[m->body_jntadr[t->button]] != mjJNT_SLIDE)
    return mile_env_error(MILE_ENV_ERR_IO, "%s: body 'button' needs one slide joint", t->mj.task_name);
  t->qpos_adr = m->jnt_qposadr[m->body_jntadr[t->button]];
  t->dof_adr = m->jnt_dofadr[m->body_jntadr[t->button]];
  memcpy(t->box_default, m->body_pos + 3 * t->box, sizeof t->box_default);
  return MILE_ENV_OK;
}

/* The button face Meta-World observes: 19.3 cm in front of the button body. */
static void button_pose(const button_task *t, double pos[3], double quat[4]) {
  const mjData *d = t->mj.d;
  memcpy(pos, d->xpos + 3 * t->button, 3 * sizeof(double));
  pos[1] -= 0.193;
  memcpy(quat, d->xquat + 4 * t->button, 4 * sizeof(double));
}

static mile_env_status button_reset(mile_env *env, double *obs) {
  button_task *t = env->impl;
  mjModel *m = t->mj.m;
  memcpy(m->body_pos + 3 * t->box, t->box_default, sizeof t->box_default);
  mile_env_status status = mile_mj_reset_hand(&t->mj);
  if (status != MILE_ENV_OK) return status;

  /* Meta-World draws one vector over the reset space (z is fixed at 0.115) */
  double box[3];
  box[0] = mile_env_rng_uniform(&env->rng, -0.1, 0.1);
  box[1] = mile_env_rng_uniform(&env->rng, 0.85, 0.9);
  box[2] = 0.115;
  memcpy(m->body_pos + 3 * t->box, box, sizeof box);
  t->mj.d->qpos[t->qpos_adr] = 0.0;
  t->mj.d->qvel[t->dof_adr] = 0.0;
  /* goal = site "hole", 10 cm in front of the box; the button face starts 19.35 cm in front */
  t->target[0] = box[0];
  t->target[1] = box[1] - 0.1;
  t->target[2] = box[2];
  t->obj_to_target_init = fabs(t->target[1] - (box[1] - 0.1935));
  if ((status = mile_mj_reset_finish(&t->mj, t->target)) != MILE_ENV_OK) return status;

  double pos[3], quat[4];
  button_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 1, obs);
  return MILE_ENV_OK;
}

/* Meta-World's "v2" reward: be near the button (weighted with the gripper opening), and
 * once within 5 cm, get paid for pressing it. */
static double button_reward(const button_task *t, const double *obs) {
  const double *obj = obs + 4;
  double tcp[3];
  mile_mj_tcp_center(&t->mj, tcp);
  double tcp_to_obj = mile_mj_dist3(obj, tcp);
  double tcp_to_obj_init = mile_mj_dist3(obj, t->mj.init_tcp);
  double obj_to_target = fabs(t->target[1] - obj[1]);
  double tcp_closed = fmax(obs[3], 0.0);
  double near_button = mile_mj_tolerance(tcp_to_obj, 0.0, 0.05, tcp_to_obj_init);
  double pressed = mile_mj_tolerance(obj_to_target, 0.0, 0.005, t->obj_to_target_init);
  double reward = 2.0 * mile_mj_hamacher(tcp_closed, near_button);
  if (tcp_to_obj <= 0.05) reward += 8.0 * pressed;
  return reward;
}

static mile_env_status button_step(mile_env *env, const double *action, double *obs, mile_env_step_result *result) {
  button_task *t = env->impl;
  mile_env_status status = mile_mj_advance(&t->mj, action);
  if (status != MILE_ENV_OK) return status;
  double pos[3], quat[4];
  button_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 0, obs);
  result->reward = button_reward(t, obs);
  result->success = fabs(t->target[1] - obs[5]) <= success_radius;
  result->truncated = env->steps + 1 >= MILE_MJ_MAX_STEPS;
  return MILE_ENV_OK;
}

/* numpy.isclose(a, b, atol=0.02): |a - b| <= atol + rtol * |b| */
static int is_close(double a, double b) { return fabs(a - b) <= 0.02 + 1e-5 * fabs(b); }

/* SawyerButtonPressV2Policy: line up in x and z 7 cm below the button's centre point
 * while backing off in y, then push 2 cm past the button face. */
static mile_env_status button_expert(mile_env *env, const double *obs, double *action) {
  const double *hand = obs, *obj = obs + 4;
  double button[3] = {obj[0], obj[1], obj[2] - 0.07};
  double to[3] = {button[0], hand[1] - 0.1, button[2]};
  if (is_close(hand[0], button[0]) && is_close(hand[2], button[2])) to[1] = button[1] + 0.02;
  for (int i = 0; i < 3; i++) action[i] = mile_mj_clip(25.0 * (to[i] - hand[i]), -1.0, 1.0);
  action[3] = 0.0;
  (void)env;
  return MILE_ENV_OK;
}

const mile_env_task mile_task_button_press = {
    .name = "button-press-v3",
    .create = button_create,
    .destroy = mile_mj_destroy,
    .reset = button_reset,
    .step = button_step,
    .expert_act = button_expert,
    .render = mile_mj_render,
};
