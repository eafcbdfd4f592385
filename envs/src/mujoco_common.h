/* mujoco_common.h - what the three MuJoCo manipulation tasks (drawer-open, button-press,
 * peg-insert-side) share: loading a model, the mocap-driven gripper, stepping with
 * MuJoCo's errors trapped, Meta-World's 39-dim observation, the reward helpers and
 * offscreen rendering. Private to libmileenvs.
 *
 * A task keeps its state in a struct whose first member is a mile_mj, made by
 * mile_mj_create (env->impl points at it), and uses mile_mj_destroy and
 * mile_mj_render directly as its vtable entries. Facts: /work/shared/ENVS.md section 2. */
#ifndef MILE_MUJOCO_COMMON_H
#define MILE_MUJOCO_COMMON_H

#include <mujoco/mujoco.h>

#include "env_internal.h"

enum {
  MILE_MJ_OBS_DIM = 39,    /* curr(18), prev(18), goal(3) */
  MILE_MJ_FRAME_DIM = 18,  /* hand(3), gripper opening(1), object pos(3) + quat(4), padding(7) */
  MILE_MJ_ACT_DIM = 4,     /* dx, dy, dz, grip effort */
  MILE_MJ_MAX_STEPS = 500, /* Meta-World's max_path_length */
  MILE_MJ_FRAME_SKIP = 5,  /* physics steps per env step */
  MILE_MJ_HAND_RESET_STEPS = 50
};

typedef struct mile_mj_gl mile_mj_gl; /* GL context and MuJoCo render state (mujoco_render.c) */

typedef struct mile_mj {
  mjModel *m;
  mjData *d;
  const char *task_name;
  int hand, rightclaw, leftclaw;  /* body ids */
  int mocap;                      /* row of d->mocap_pos */
  int act_right, act_left;        /* finger actuators */
  int tip_right, tip_left;        /* fingertip sites: their mean is the tool centre point */
  int goal_site;
  double hand_init[3];            /* where the hand reset parks the gripper */
  double prev[MILE_MJ_FRAME_DIM]; /* the previous frame of the observation */
  double goal[3];
  double init_tcp[3];             /* tool centre point after the hand reset */
  mile_mj_gl *render;             /* made by the first mile_mj_render */
} mile_mj;

/* Allocate env->impl (impl_size bytes, zeroed, a mile_mj first), load model_file (found
 * by mile_env_model_path), read the options every manipulation task knows
 * ("torquescale", the weld's rotational weight: 5 as in Meta-World v3, 1 as in v2) and
 * declare the spaces: the 39-dim observation (Meta-World's hand and goal bounds, objects
 * unbounded), a 4-dim action in [-1, 1], 500-step episodes. The data is put in the
 * hand-reset pose so that rendering works before the first reset. On failure env->impl
 * may be half made: the env's destroy (mile_mj_destroy) frees it. */
mile_env_status mile_mj_create(mile_env *env, mile_env_options *opts, size_t impl_size, const char *model_file,
                               const double hand_init[3], const double goal_low[3], const double goal_high[3]);
/* Free model, data, render state and env->impl. Safe on a half-made impl. */
void mile_mj_destroy(mile_env *env);

/* Ids by name; MILE_ENV_ERR_IO naming the model when one is missing. */
mile_env_status mile_mj_body(const mile_mj *mj, const char *name, int *id);
mile_env_status mile_mj_site(const mile_mj *mj, const char *name, int *id);

/* First half of a reset: clear the simulation, put the hand at hand_init and run
 * Meta-World's hand reset (50 env steps holding the mocap there, gripper opening).
 * The task then places its objects and calls mile_mj_reset_finish. */
mile_env_status mile_mj_reset_hand(mile_mj *mj);
/* Second half: recompute positions after the task moved bodies or set qpos, remember
 * the tool centre point and set the goal (and move the "goal" site there). */
mile_env_status mile_mj_reset_finish(mile_mj *mj, const double goal[3]);

/* Apply an action (xyz clipped to [-1, 1] and added, times 1 cm, to the mocap position,
 * which stays inside the hand box; effort clipped to [-1, 1] -> finger targets
 * [a3, -a3]) and run 5 physics steps, then update positions for the observation.
 * MILE_ENV_ERR_SIM when MuJoCo failed or the state blew up; the env then needs a reset. */
mile_env_status mile_mj_advance(mile_mj *mj, const double *action);

/* Write the observation: the current frame (hand, gripper opening, the task's object
 * block), the previous frame (= the current one when first is set, right after a
 * reset), the goal; clipped to the observation space like Meta-World's step. The
 * current frame becomes the next call's previous one. */
void mile_mj_observe(mile_env *env, const double obj_pos[3], const double obj_quat[4], int first, double *obs);

/* Mean of the two fingertip sites. */
void mile_mj_tcp_center(const mile_mj *mj, double out[3]);

/* Draw the scene into rgb (width*height*3 bytes, top row first) through an offscreen GL
 * context: EGL, else OSMesa, or the one $MUJOCO_GL names ("egl", "osmesa");
 * MILE_ENV_ERR_UNSUPPORTED when none can be opened. */
mile_env_status mile_mj_render(mile_env *env, uint8_t *rgb, int32_t width, int32_t height);
/* Free what mile_mj_render made (NULL-safe); called by mile_mj_destroy. */
void mile_mj_gl_free(mile_mj_gl *gl);

/* Run fn under the MuJoCo error trap: a MuJoCo error inside comes back as
 * MILE_ENV_ERR_SIM with MuJoCo's message instead of ending the process. */
mile_env_status mile_mj_trapped(mile_mj *mj, void (*fn)(void *arg), void *arg, const char *what);

/* Reward helpers of Meta-World (taken from dm_control), ENVS.md 2.9. */
/* tolerance(x, bounds=(lo, hi), margin, sigmoid="long_tail", value_at_margin=0.1) */
double mile_mj_tolerance(double x, double lo, double hi, double margin);
/* a*b / (a + b - a*b); 0 when the denominator is 0 */
double mile_mj_hamacher(double a, double b);
/* inside the box spanned by corners zero and one: product over the axes of
 * (curr - zero) / (one - zero); outside: 1 */
double mile_mj_rect_prism_tolerance(const double curr[3], const double zero[3], const double one[3]);

double mile_mj_norm3(const double a[3]);
double mile_mj_dist3(const double a[3], const double b[3]);
double mile_mj_clip(double x, double lo, double hi);

#endif
