/* autograd.c - graph nodes, recording, and the backward pass.
 *
 * Each node is owned by the tensors it produced (through grad_fn) and owns its
 * inputs. Backward collects the nodes reachable from the root, orders them by
 * creation (a node is always created after its inputs' nodes, so descending
 * creation order is a topological order) and runs a plain loop: no recursion. */
#include <string.h>

#include "internal.h"

static _Thread_local int32_t grad_disabled; /* 0: grad mode on (the default) */
static _Thread_local uint64_t node_counter;
static _Thread_local uint64_t visit_counter;

int32_t mile_grad_enabled(void) { return !grad_disabled; }

int32_t mile_set_grad_enabled(int32_t enabled) {
  int32_t previous = !grad_disabled;
  grad_disabled = !enabled;
  return previous;
}

int32_t mile_requires_grad(const mile_tensor *t) { return t->requires_grad || t->grad_fn != NULL; }

mile_status mile_set_requires_grad(mile_tensor *t, int32_t flag) {
  if (t->grad_fn)
    return mile_set_error(MILE_ERR_STATE, "requires_grad: only leaf tensors can change it (this one comes from %s)",
                          t->grad_fn->name);
  t->requires_grad = flag != 0;
  return MILE_OK;
}

void mile_zero_grad(mile_tensor *t) {
  mile_tensor_release(t->grad);
  t->grad = NULL;
}

const char *mile_grad_fn_name(const mile_tensor *t) { return t->grad_fn ? t->grad_fn->name : NULL; }

bool mile_any_requires_grad(int32_t n, mile_tensor *const *inputs) {
  if (grad_disabled) return false;
  for (int32_t i = 0; i < n; i++)
    if (inputs[i] && mile_requires_grad(inputs[i])) return true;
  return false;
}

/* ---- nodes ------------------------------------------------------------------ */

static void node_drop_saved(mile_node *node) {
  for (int32_t i = 0; i < node->n_saved; i++) mile_tensor_release(node->saved[i]);
  node->n_saved = 0;
}

/* Free a node's graph iteratively: a long chain of nodes would overflow the C stack
 * if freed by recursion through mile_tensor_release. */
void mile_node_release(mile_node *node) {
  if (!node || --node->refcount > 0) return;
  mile_node *pending = node;
  node->dead_next = NULL;
  while (pending) {
    mile_node *n = pending;
    pending = n->dead_next;
    node_drop_saved(n);
    mile_tensor_release(n->grad);
    for (int32_t i = 0; i < n->n_inputs; i++) {
      mile_tensor *t = n->inputs[i];
      if (t && t->refcount == 1 && t->grad_fn && t->grad_fn->refcount == 1) {
        /* t dies here and takes its node with it: free that node in this loop */
        mile_node *child = t->grad_fn;
        t->grad_fn = NULL;
        child->dead_next = pending;
        pending = child;
      }
      mile_tensor_release(t);
    }
    if (n->custom_free) n->custom_free(n->custom_user);
    free(n->inputs);
    free(n->needs);
    free(n);
  }
}

mile_status mile_record(mile_tensor *out, const char *name, mile_backward_fn backward, int32_t n_inputs,
                        mile_tensor *const *inputs, mile_node **node_out) {
  *node_out = NULL;
  if (!mile_any_requires_grad(n_inputs, inputs)) return MILE_OK;
  mile_node *node = calloc(1, sizeof *node);
  mile_tensor **ins = calloc((size_t)n_inputs, sizeof *ins);
  uint8_t *needs = calloc((size_t)n_inputs, 1);
  if (!node || !ins || !needs) {
    free(node), free(ins), free(needs);
    return mile_err_nomem(name);
  }
  node->refcount = 1;
  node->seq = ++node_counter;
  node->name = name;
  node->backward = backward;
  node->n_inputs = n_inputs;
  node->inputs = ins;
  node->needs = needs;
  for (int32_t i = 0; i < n_inputs; i++) {
    ins[i] = mile_tensor_retain(inputs[i]);
    needs[i] = inputs[i] && mile_requires_grad(inputs[i]);
  }
  node->out_ndim = out->ndim;
  node->out_dtype = out->dtype;
  memcpy(node->out_shape, out->shape, sizeof node->out_shape);
  mile_node_release(out->grad_fn);
  out->grad_fn = node;
  *node_out = node;
  return MILE_OK;
}

mile_status mile_node_save(mile_node *node, mile_tensor *t) {
  mile_tensor *kept = t;
  if (t->grad_fn == node) {
    /* the node's own output: keep an alias without grad_fn, or output and node
     * would own each other and never be freed */
    MILE_TRY(mile_tensor_view_of(&kept, t, t->ndim, t->shape, t->stride, t->offset));
  } else {
    mile_tensor_retain(t);
  }
  node->saved[node->n_saved] = kept;
  node->saved_version[node->n_saved++] = t->storage->version;
  return MILE_OK;
}

mile_status mile_node_saved(mile_node *node, int32_t i, mile_tensor **t) {
  if (node->saved[i]->storage->version != node->saved_version[i])
    return mile_set_error(MILE_ERR_STATE,
                          "backward: a tensor saved by %s was modified in place after it was used; "
                          "clone it before changing it",
                          node->name);
  *t = node->saved[i];
  return MILE_OK;
}

/* ---- custom nodes ------------------------------------------------------------ */

static mile_status custom_backward(mile_node *node, mile_tensor *g, mile_tensor **grads) {
  mile_status st = node->custom_backward(node->custom_user, g, node->n_inputs, grads);
  if (st != MILE_OK) {
    for (int32_t i = 0; i < node->n_inputs; i++) {
      mile_tensor_release(grads[i]);
      grads[i] = NULL;
    }
  }
  return st;
}

mile_status mile_attach_custom(mile_tensor *output, int32_t n_inputs, mile_tensor *const *inputs,
                               mile_custom_backward_fn backward, mile_custom_free_fn free_user, void *user,
                               const char *name) {
  mile_node *node = NULL;
  mile_status st = MILE_OK;
  if (!backward) st = mile_set_error(MILE_ERR_ARGUMENT, "attach_custom: backward is NULL");
  else if (output->grad_fn || output->requires_grad)
    st = mile_set_error(MILE_ERR_STATE, "attach_custom: the output already has a grad_fn (compute it with grad mode off)");
  else st = mile_record(output, name ? name : "custom", custom_backward, n_inputs, inputs, &node);
  if (!node) {
    if (free_user) free_user(user);
    return st;
  }
  node->custom_backward = backward;
  node->custom_free = free_user;
  node->custom_user = user;
  return MILE_OK;
}

/* ---- backward ---------------------------------------------------------------- */

mile_status mile_sum_to_shape(mile_tensor **out, mile_tensor *g, int32_t ndim, const int64_t *shape) {
  *out = NULL;
  if (g->ndim == ndim && memcmp(g->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0) {
    *out = mile_tensor_retain(g);
    return MILE_OK;
  }
  mile_tensor *cur = mile_tensor_retain(g);
  /* sum away leading dims, then dims where the input has size 1 */
  while (cur->ndim > ndim) {
    mile_tensor *next;
    mile_status st = mile_reduce(&next, MILE_SUM, cur, 0, 0);
    mile_tensor_release(cur);
    if (st != MILE_OK) return st;
    cur = next;
  }
  for (int32_t d = 0; d < ndim; d++) {
    int32_t cd = d - (ndim - cur->ndim); /* dims align on the right: g may have fewer */
    if (cd >= 0 && shape[d] == 1 && cur->shape[cd] != 1) {
      mile_tensor *next;
      mile_status st = mile_reduce(&next, MILE_SUM, cur, cd, 1);
      mile_tensor_release(cur);
      if (st != MILE_OK) return st;
      cur = next;
    }
  }
  if (!(cur->ndim == ndim && memcmp(cur->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0)) {
    /* a gradient smaller than the input (a custom backward may return any shape that
     * broadcasts to it, e.g. 0-d): broadcast it up; fails when it does not broadcast */
    mile_tensor *next;
    mile_status st = mile_expand(&next, cur, ndim, shape);
    mile_tensor_release(cur);
    if (st != MILE_OK) return st;
    cur = next;
  }
  *out = cur;
  return MILE_OK;
}

/* *acc += g, out of place (g may be shared with the graph or the user). */
static mile_status accumulate(mile_tensor **acc, mile_tensor *g) {
  if (!*acc) {
    /* keep g itself only when nothing else can see its storage (a view of a tensor
     * a callback still holds must not become .grad, which may be changed in place) */
    if (g->refcount == 1 && g->storage->refcount == 1 && mile_is_contiguous(g) && !g->grad_fn) {
      *acc = mile_tensor_retain(g);
      return MILE_OK;
    }
    return mile_clone(acc, g);
  }
  mile_tensor *sum;
  MILE_TRY(mile_binary(&sum, MILE_ADD, *acc, g));
  mile_tensor_release(*acc);
  *acc = sum;
  return MILE_OK;
}

typedef struct node_list {
  mile_node **items;
  int64_t count, capacity;
} node_list;

static mile_status list_push(node_list *l, mile_node *n) {
  if (l->count == l->capacity) {
    int64_t cap = l->capacity ? 2 * l->capacity : 64;
    mile_node **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return mile_err_nomem("backward");
    l->items = items, l->capacity = cap;
  }
  l->items[l->count++] = n;
  return MILE_OK;
}

static int by_seq_descending(const void *a, const void *b) {
  uint64_t x = (*(mile_node *const *)a)->seq, y = (*(mile_node *const *)b)->seq;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Every node reachable from root, in descending creation order. */
static mile_status collect(mile_node *root, node_list *order) {
  node_list stack = {0};
  uint64_t mark = ++visit_counter;
  mile_status st = list_push(&stack, root);
  root->visit = mark;
  while (st == MILE_OK && stack.count > 0) {
    mile_node *n = stack.items[--stack.count];
    st = list_push(order, n);
    for (int32_t i = 0; st == MILE_OK && i < n->n_inputs; i++) {
      mile_node *child = n->inputs[i] ? n->inputs[i]->grad_fn : NULL;
      if (child && child->visit != mark) {
        child->visit = mark;
        st = list_push(&stack, child);
      }
    }
  }
  free(stack.items);
  if (st == MILE_OK) qsort(order->items, (size_t)order->count, sizeof *order->items, by_seq_descending);
  return st;
}

static mile_status run_node(mile_node *n) {
  if (n->released)
    return mile_set_error(MILE_ERR_STATE,
                          "backward: the graph through %s was already freed by an earlier backward; "
                          "pass retain_graph to the first backward to run it twice",
                          n->name);
  mile_tensor *grads_small[4] = {0};
  mile_tensor **grads = n->n_inputs <= 4 ? grads_small : calloc((size_t)n->n_inputs, sizeof *grads);
  if (!grads) return mile_err_nomem("backward");
  mile_status st = n->backward(n, n->grad, grads);
  for (int32_t i = 0; i < n->n_inputs; i++) {
    mile_tensor *in = n->inputs[i];
    if (st == MILE_OK && grads[i] && n->needs[i]) {
      mile_tensor *g;
      st = mile_sum_to_shape(&g, grads[i], in->ndim, in->shape);
      if (st == MILE_OK && g->dtype != in->dtype) {
        mile_tensor *c;
        st = mile_to_dtype(&c, g, (mile_dtype)in->dtype);
        mile_tensor_release(g);
        g = st == MILE_OK ? c : NULL;
      }
      /* drop the backward's own reference first: a gradient nothing else holds is
       * then adopted by accumulate instead of copied */
      mile_tensor_release(grads[i]), grads[i] = NULL;
      if (st == MILE_OK) st = accumulate(in->grad_fn ? &in->grad_fn->grad : &in->grad, g);
      mile_tensor_release(g);
    }
    mile_tensor_release(grads[i]);
  }
  if (grads != grads_small) free(grads);
  return st;
}

mile_status mile_backward(mile_tensor *root, mile_tensor *seed, int32_t retain_graph) {
  if (!mile_requires_grad(root))
    return mile_set_error(MILE_ERR_STATE, "backward: the tensor does not require grad and has no grad_fn");
  mile_tensor *g0 = NULL;
  if (seed) {
    if (!mile_same_shape(seed, root)) {
      char a[96], b[96];
      return mile_set_error(MILE_ERR_SHAPE, "backward: gradient of shape %s for a tensor of shape %s",
                            mile_shape_str(seed, a, sizeof a), mile_shape_str(root, b, sizeof b));
    }
    MILE_TRY(mile_to_dtype(&g0, seed, (mile_dtype)root->dtype));
  } else {
    if (mile_numel(root) != 1) {
      char a[96];
      return mile_set_error(MILE_ERR_SHAPE,
                            "backward: the tensor has shape %s; pass a gradient unless it holds one element",
                            mile_shape_str(root, a, sizeof a));
    }
    MILE_TRY(mile_full(&g0, (mile_dtype)root->dtype, root->ndim, root->shape, 1.0));
  }

  int32_t previous = mile_set_grad_enabled(0);
  mile_status st;
  if (!root->grad_fn) { /* a leaf */
    st = accumulate(&root->grad, g0);
    mile_tensor_release(g0);
    mile_set_grad_enabled(previous);
    return st;
  }
  node_list order = {0};
  st = collect(root->grad_fn, &order);
  if (st == MILE_OK) st = accumulate(&root->grad_fn->grad, g0);
  mile_tensor_release(g0);
  for (int64_t i = 0; i < order.count && st == MILE_OK; i++) {
    mile_node *n = order.items[i];
    if (!n->grad) continue; /* no gradient reached it */
    st = run_node(n);
    mile_tensor_release(n->grad);
    n->grad = NULL;
    if (!retain_graph && st == MILE_OK) {
      node_drop_saved(n);
      n->released = 1;
    }
  }
  for (int64_t i = 0; i < order.count; i++) { /* after an error, drop partial gradients */
    mile_tensor_release(order.items[i]->grad);
    order.items[i]->grad = NULL;
  }
  free(order.items);
  mile_set_grad_enabled(previous);
  return st;
}
