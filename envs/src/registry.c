/* registry.c - the tasks mile_env_create knows, in the order mile_env_name_at lists them.
 *
 * Adding a task: append one X(...) line with the name of its `const mile_env_task`
 * (defined in its own file under envs/src/). */
#include "env_internal.h"

#define MILE_ENV_TASK_LIST(X)            \
  X(mile_task_lunar_lander)              \
  X(mile_task_lunar_lander_continuous)   \
  X(mile_task_drawer_open)               \
  X(mile_task_button_press)              \
  X(mile_task_peg_insert_side)           \
  /* append new tasks above this line */

#define DECLARE_TASK(task) extern const mile_env_task task;
MILE_ENV_TASK_LIST(DECLARE_TASK)
#undef DECLARE_TASK

#define TASK_ADDRESS(task) &task,
static const mile_env_task *const tasks[] = {MILE_ENV_TASK_LIST(TASK_ADDRESS)};
#undef TASK_ADDRESS

const mile_env_task *mile_env_task_at(int32_t i) {
  if (i < 0 || (size_t)i >= sizeof tasks / sizeof tasks[0]) return NULL;
  return tasks[i];
}
