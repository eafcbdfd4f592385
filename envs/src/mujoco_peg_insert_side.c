/* mujoco_peg_insert_side.c - peg-insert-side-v3: grasp a peg lying on the table and push
 * it sideways into the hole of a block. Reset, observation, reward, success rule and
 * scripted expert of Meta-World's SawyerPegInsertionSideEnvV3 /
 * SawyerPegInsertionSideV2Policy (ENVS.md 2.8-2.10). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mujoco_common.h"

static const double hand_init[3] = {0.0, 0.6, 0.2};
static const double target_radius = 0.07; /* TARGET_RADIUS of this task */
static const double head_scale[3] = {1.0, 2.0, 2.0}; /* y and z errors count double */

typedef struct peg_task {
  mile_mj mj; /* first: env->impl is also a mile_mj */
  int peg, box; /* body ids */
  int peg_qpos, peg_dof; /* the peg's free joint */
  int head, grasp; /* sites pegHead, pegGrasp */
  int corner[4]; /* collision-prism corners: bottom-right 1, top-left 1, bottom-right 2, top-left 2 */
  double box_default[3];
  double obj_init[3]; /* where the peg was placed */
  double head_init[3]; /* peg head before placing (the reward's margin) */
  double target[3];
} peg_task;

static mile_env_status peg_create(mile_env *env, mile_env_options *opts) {
  static const double goal_low[3] = {-0.32, 0.4, 0.129}, goal_high[3] = {-0.22, 0.7, 0.131}; /* box range + hole */
  mile_env_status status =
      mile_mj_create(env, opts, sizeof(peg_task), "peg_insert_side.xml", hand_init, goal_low, goal_high);
  if (status != MILE_ENV_OK) return status;
  peg_task *t = env->impl;
  const mjModel *m = t->mj.m;
  static const char *corners[4] = {"bottom_right_corner_collision_box_1", "top_left_corner_collision_box_1",
                                   "bottom_right_corner_collision_box_2", "top_left_corner_collision_box_2"};
  if ((status = mile_mj_body(&t->mj, "peg", &t->peg)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_body(&t->mj, "box", &t->box)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_site(&t->mj, "pegHead", &t->head)) != MILE_ENV_OK) return status;
  if ((status = mile_mj_site(&t->mj, "pegGrasp", &t->grasp)) != MILE_ENV_OK) return status;
  for (int i = 0; i < 4; i++)
    if ((status = mile_mj_site(&t->mj, corners[i], &t->corner[i])) != MILE_ENV_OK) return status;
  if (m->body_jntnum[t->peg] != 1 || m->jnt_type[m->body_jntadr[t->peg]] != mjJNT_FREE)
    return mile_env_error(MILE_ENV_ERR_IO, "%s: body 'peg' needs a free joint", t->mj.task_name);
  t->peg_qpos = m->jnt_qposadr[m->body_jntadr[t->peg]];
  t->peg_dof = m->jnt_dofadr[m->body_jntadr[t->peg]];
  memcpy(t->box_default, m->body_pos + 3 * t->box, sizeof t->box_default);
  return MILE_ENV_OK;
}

/* Meta-World observes site pegGrasp with scipy's scalar-last quaternion (x, y, z, w). */
static void peg_pose(const peg_task *t, double pos[3], double quat[4]) {
  const mjData *d = t->mj.d;
  memcpy(pos, d->site_xpos + 3 * t->grasp, 3 * sizeof(double));
  double q[4];
  mju_mat2Quat(q, d->site_xmat + 9 * t->grasp);
  quat[0] = q[1], quat[1] = q[2], quat[2] = q[3], quat[3] = q[0];
}

static mile_env_status peg_reset(mile_env *env, double *obs) {
  peg_task *t = env->impl;
  mjModel *m = t->mj.m;
  mjData *d = t->mj.d;
  memcpy(m->body_pos + 3 * t->box, t->box_default, sizeof t->box_default);
  mile_env_status status = mile_mj_reset_hand(&t->mj);
  if (status != MILE_ENV_OK) return status;
  /* read before the peg moves, as Meta-World does: the head at the model's peg position */
  memcpy(t->head_init, d->site_xpos + 3 * t->head, sizeof t->head_init);

  /* peg and box drawn together, again while they are closer than 10 cm (the ranges are
   * 25 cm apart in x, so the loop never repeats; kept as the rule reads) */
  double peg[3], box[3];
  for (int tries = 0;; tries++) {
    peg[0] = mile_env_rng_uniform(&env->rng, 0.0, 0.2);
    peg[1] = mile_env_rng_uniform(&env->rng, 0.5, 0.7);
    peg[2] = 0.02;
    box[0] = mile_env_rng_uniform(&env->rng, -0.35, -0.25);
    box[1] = mile_env_rng_uniform(&env->rng, 0.4, 0.7);
    box[2] = mile_env_rng_uniform(&env->rng, -0.001, 0.001);
    if (hypot(peg[0] - box[0], peg[1] - box[1]) >= 0.1 || tries >= 100) break;
  }
  mjtNum *q = d->qpos + t->peg_qpos;
  q[0] = peg[0], q[1] = peg[1], q[2] = peg[2], q[3] = 1.0, q[4] = 0.0, q[5] = 0.0, q[6] = 0.0;
  memset(d->qvel + t->peg_dof, 0, 6 * sizeof(mjtNum));
  memcpy(t->obj_init, peg, sizeof peg);
  memcpy(m->body_pos + 3 * t->box, box, sizeof box);
  /* 6.6 cm inside the hole, at its centre height */
  t->target[0] = box[0] + 0.03;
  t->target[1] = box[1];
  t->target[2] = box[2] + 0.13;
  if ((status = mile_mj_reset_finish(&t->mj, t->target)) != MILE_ENV_OK) return status;

  double pos[3], quat[4];
  peg_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 1, obs);
  return MILE_ENV_OK;
}

static double head_error(const double head[3], const double target[3]) {
  double e[3];
  for (int i = 0; i < 3; i++) e[i] = (head[i] - target[i]) * head_scale[i];
  return mile_mj_norm3(e);
}

/* Meta-World's _gripper_caging_reward (ENVS.md 2.9) with this task's arguments: both
 * claws around the peg along y, the tool centre on it in x-z, and the grip closing. */
static double caging_reward(const peg_task *t, const double *action, const double obj[3]) {
  const double obj_radius = 0.0075, pad_success = 0.03, xz_thresh = 0.005;
  const mjData *d = t->mj.d;
  /* the claw geoms are the pads; their centres are the claw bodies' centres of mass */
  const double pad_y[2] = {d->xipos[3 * t->mj.leftclaw + 1], d->xipos[3 * t->mj.rightclaw + 1]};
  double caging_lr[2];
  for (int i = 0; i < 2; i++) {
    double margin = fabs(fabs(pad_y[i] - t->obj_init[1]) - pad_success);
    caging_lr[i] = mile_mj_tolerance(fabs(pad_y[i] - obj[1]), obj_radius, pad_success, margin);
  }
  double caging_y = mile_mj_hamacher(caging_lr[0], caging_lr[1]);

  double tcp[3];
  mile_mj_tcp_center(&t->mj, tcp);
  const double *init_tcp = t->mj.init_tcp;
  double xz_margin = hypot(t->obj_init[0] - init_tcp[0], t->obj_init[2] - init_tcp[2]) - xz_thresh;
  double caging_xz = mile_mj_tolerance(hypot(tcp[0] - obj[0], tcp[2] - obj[2]), 0.0, xz_thresh, xz_margin);

  double gripper_closed = mile_mj_clip(action[3], 0.0, 1.0);
  double caging = mile_mj_hamacher(caging_y, caging_xz);
  double gripping = caging > 0.97 ? gripper_closed : 0.0;
  double caging_and_gripping = mile_mj_hamacher(caging, gripping);
  return (caging_and_gripping + caging) / 2.0; /* high_density */
}

static double peg_reward(const peg_task *t, const double *action, const double *obs, double obj_to_target) {
  const mjData *d = t->mj.d;
  const double *obj = obs + 4;
  const double *head = d->site_xpos + 3 * t->head;
  double tcp[3];
  mile_mj_tcp_center(&t->mj, tcp);
  double tcp_to_obj = mile_mj_dist3(obj, tcp);
  double tcp_opened = obs[3];

  double in_place = mile_mj_tolerance(obj_to_target, 0.0, target_radius, head_error(t->head_init, t->target));
  /* keep the head out of the block's faces below and above the hole */
  const double *c = d->site_xpos;
  double box1 = mile_mj_rect_prism_tolerance(head, c + 3 * t->corner[0], c + 3 * t->corner[1]);
  double box2 = mile_mj_rect_prism_tolerance(head, c + 3 * t->corner[2], c + 3 * t->corner[3]);
  in_place = mile_mj_hamacher(in_place, mile_mj_hamacher(box2, box1));

  double grasped = caging_reward(t, action, obj);
  int lifted = tcp_to_obj < 0.08 && tcp_opened > 0 && obj[2] - 0.01 > t->obj_init[2];
  if (lifted) grasped = 1.0;
  double reward = mile_mj_hamacher(grasped, in_place);
  if (lifted) reward += 1.0 + 5.0 * in_place;
  if (obj_to_target <= target_radius) reward = 10.0;
  return reward;
}

static mile_env_status peg_step(mile_env *env, const double *action, double *obs, mile_env_step_result *result) {
  peg_task *t = env->impl;
  mile_env_status status = mile_mj_advance(&t->mj, action);
  if (status != MILE_ENV_OK) return status;
  double pos[3], quat[4];
  peg_pose(t, pos, quat);
  mile_mj_observe(env, pos, quat, 0, obs);
  double obj_to_target = head_error(t->mj.d->site_xpos + 3 * t->head, t->target);
  result->reward = peg_reward(t, action, obs, obj_to_target);
  result->success = obj_to_target <= target_radius;
  result->truncated = env->steps + 1 >= MILE_MJ_MAX_STEPS;
  return MILE_ENV_OK;
}

/* SawyerPegInsertionSideV2Policy: over the peg, down, close (effort 0.6), lift and carry
 * it 40 cm in front of the hole at the hole's height, then push it in along -x. */
static mile_env_status peg_expert(mile_env *env, const double *obs, double *action) {
  const double *hand = obs, *peg = obs + 4, *goal = obs + 36;
  const double hole[3] = {-0.35, goal[1], 0.16};
  double dxy = hypot(hand[0] - peg[0], hand[1] - peg[1]);
  double to[3];
  if (dxy > 0.04) {
    to[0] = peg[0], to[1] = peg[1], to[2] = peg[2] + 0.3;
  } else if (fabs(hand[2] - peg[2]) > 0.025) {
    to[0] = peg[0], to[1] = peg[1], to[2] = peg[2];
  } else if (hypot(peg[1] - hole[1], peg[2] - hole[2]) > 0.03) {
    to[0] = hole[0] + 0.4, to[1] = hole[1], to[2] = hole[2];
  } else {
    to[0] = hole[0], to[1] = hole[1], to[2] = hole[2];
  }
  for (int i = 0; i < 3; i++) action[i] = mile_mj_clip(25.0 * (to[i] - hand[i]), -1.0, 1.0);
  action[3] = dxy > 0.04 || fabs(hand[2] - peg[2]) > 0.15 ? -1.0 : 0.6;
  (void)env;
  return MILE_ENV_OK;
}

const mile_env_task mile_task_peg_insert_side = {
    .name = "peg-insert-side-v3",
    .create = peg_create,
    .destroy = mile_mj_destroy,
    .reset = peg_reset,
    .step = peg_step,
    .expert_act = peg_expert,
    .render = mile_mj_render,
};
