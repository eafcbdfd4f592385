/* internal.h - what the core's .c files share and the public API does not show. */
#ifndef MILE_INTERNAL_H
#define MILE_INTERNAL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "mile/mile.h"

struct mile_storage {
  void *data;
  size_t nbytes;
  int32_t refcount;
  uint64_t version; /* bumped by in-place writes; autograd checks saved tensors against it */
};

/* ---- errors --------------------------------------------------------------- */
#define MILE_TRY(expr)                      \
  do {                                      \
    mile_status try_status_ = (expr);       \
    if (try_status_ != MILE_OK) return try_status_; \
  } while (0)
mile_status mile_err_nomem(const char *fname);
/* Shape as text "{2,3}" into buf (for messages). */
const char *mile_shape_str(const mile_tensor *t, char *buf, size_t size);
const char *mile_dims_str(int32_t ndim, const int64_t *shape, char *buf, size_t size);

/* ---- storage blocks (alloc.c) ------------------------------------------------ */
/* A 64-byte aligned block of at least nbytes (never NULL for nbytes = 0 unless
 * out of memory); freed blocks are cached for reuse. */
void *mile_storage_alloc(size_t nbytes);
void mile_storage_free(void *data, size_t nbytes);

/* ---- matrix products (gemm.c) ---------------------------------------------- */
/* A 2-d operand as BLAS reads it: row-major data, transposed or not, leading dim. */
typedef struct mile_operand {
  const void *data;
  bool trans;
  int64_t ld;
} mile_operand;
/* How BLAS can read the rows x cols matrix at `base` with strides s0, s1 (elements);
 * false when it needs a contiguous copy first. */
bool mile_as_operand(const void *base, int64_t rows, int64_t cols, int64_t s0, int64_t s1, mile_operand *op);
/* c[m,n] = a[m,k] b[k,n] + beta c (row-major, ldc), on the library and threads
 * mile/compute.h selects. */
void mile_gemm(mile_dtype dtype, const mile_operand *a, const mile_operand *b, int64_t m, int64_t n, int64_t k,
               double beta, void *c, int64_t ldc);
/* c[m,n] = a[m,k] . b[k,n] + beta c for 2-d tensors a and b of any strides (copies an
 * operand BLAS cannot read as it is). */
mile_status mile_gemm_tensors(mile_tensor *a, mile_tensor *b, double beta, void *c, int64_t ldc);
/* y[r][j] = act(y[r][j] + bias[j]) over a contiguous rows x cols block (bias may be
 * NULL): the linear layer's epilogue (linear.c), shared by compiled plans. */
void mile_bias_act(mile_dtype dtype, void *y, const void *bias, int64_t rows, int64_t cols, mile_activation act);

/* ---- threads for independent work (parallel.c) ------------------------------- */
/* fn over [begin, end) of 0..n; `part` (0 .. threads-1) tells the pieces apart, for
 * per-thread scratch. */
typedef void (*mile_range_fn)(int64_t begin, int64_t end, int part, void *ctx);
/* Run fn over 0..n split into `threads` contiguous pieces, at most one per thread;
 * threads <= 1 calls fn(0, n, 0, ctx) on this thread. */
void mile_parallel_for(int64_t n, int threads, mile_range_fn fn, void *ctx);
/* The threads work beyond the products may use: the products' fixed count, or every
 * core when the count is automatic. */
int mile_work_threads(void);
/* Threads for an elementwise pass over n elements (Adam, a layer's bias and
 * activation): mile_work_threads() from MILE_PASS_PARALLEL elements on, one below. */
enum { MILE_PASS_PARALLEL = 1 << 15 };
int mile_pass_threads(int64_t n);

/* ---- atomic files (atomic_file.c) ------------------------------------------ */
/* A file being written to a temporary beside its target; committed by a rename. */
typedef struct mile_sink {
  FILE *f;
  char *tmp;        /* the temporary file's name */
  int err;          /* errno of the first failed write, 0 while none */
  const char *step; /* what failed: "write", "fsync", "close", "rename" */
} mile_sink;
/* Messages start with "who: path: " (or "path: " when who is NULL or ""). */
mile_status mile_sink_open(mile_sink *s, const char *path, const char *who);
/* Buffered write; the first failure is kept and reported by mile_sink_close. */
void mile_sink_write(mile_sink *s, const void *p, size_t n);
/* Commit (st == MILE_OK and every write succeeded: fsync, rename, fsync the
 * directory) or remove the temporary file. Returns the final status. */
mile_status mile_sink_close(mile_sink *s, const char *path, const char *who, mile_status st);

/* ---- tensors -------------------------------------------------------------- */
/* A new tensor header (refcount 1) viewing `storage` (retained). */
mile_status mile_tensor_view_of(mile_tensor **out, const mile_tensor *base, int32_t ndim, const int64_t *shape,
                                const int64_t *stride, int64_t offset);
void mile_contiguous_strides(int32_t ndim, const int64_t *shape, int64_t *stride);
/* Element count of a shape; -1 when a size is negative or the count exceeds the
 * limit per tensor (2^40, mile/checked.h). Every tensor's own shape is within it. */
int64_t mile_shape_numel(int32_t ndim, const int64_t *shape);
/* Check a shape a caller asked for: 0..MILE_MAX_DIMS dims, no negative size, at most
 * 2^40 elements (MILE_ERR_ARGUMENT with a message naming fname otherwise). *numel
 * (may be NULL) gets the element count. */
mile_status mile_check_numel(const char *fname, int32_t ndim, const int64_t *shape, int64_t *numel);
bool mile_same_shape(const mile_tensor *a, const mile_tensor *b);
/* Normalise and check a dim (0-based, < ndim). */
mile_status mile_check_dim(const char *fname, const mile_tensor *t, int32_t dim);
mile_status mile_check_same_dtype(const char *fname, const mile_tensor *a, const mile_tensor *b);
/* Broadcast shape of a and b into shape/ndim. */
mile_status mile_broadcast_shape(const char *fname, int32_t na, const int64_t *sa, int32_t nb, const int64_t *sb,
                                 int32_t *ndim, int64_t *shape);
static inline void mile_bump_version(mile_tensor *t) { t->storage->version++; }

/* ---- strided loops -------------------------------------------------------- */
/* Inner loop over n elements: p[k] points at operand k (operand 0 is the output),
 * s[k] is its stride in elements. */
typedef void (*mile_loop_fn)(int64_t n, char **p, const int64_t *s, const void *ctx);
/* Run fn over `shape` for nops operands (ops[0] written); inputs broadcast
 * (right-aligned, size-1 dims repeat). Adjacent dims are merged when every
 * operand allows it, so contiguous data runs as one inner loop. */
void mile_loop_run(int32_t nops, const mile_tensor *const *ops, int32_t ndim, const int64_t *shape,
                   mile_loop_fn fn, const void *ctx);

/* ---- autograd ------------------------------------------------------------- */
enum { MILE_NODE_MAX_SAVED = 4, MILE_NODE_MAX_PARAMS = 2 * MILE_MAX_DIMS + 4 };

/* Computes the gradients of the node's inputs from the output's gradient g:
 * grads[i] gets a new tensor (any shape broadcastable to input i) or stays NULL.
 * Runs with grad mode off. Only inputs with node->needs[i] must be filled. */
typedef mile_status (*mile_backward_fn)(mile_node *node, mile_tensor *g, mile_tensor **grads);

struct mile_node {
  int32_t refcount;
  int32_t n_inputs;
  int32_t n_saved;
  int32_t released; /* saved tensors dropped after a backward without retain_graph */
  uint64_t seq;     /* creation order: a topological order of the graph */
  uint64_t visit;   /* traversal mark of the current backward */
  const char *name;
  mile_backward_fn backward;
  mile_tensor **inputs;
  uint8_t *needs; /* needs[i]: input i requires grad */
  mile_tensor *saved[MILE_NODE_MAX_SAVED];
  uint64_t saved_version[MILE_NODE_MAX_SAVED];
  double dparam[4];
  int64_t iparam[MILE_NODE_MAX_PARAMS];
  int32_t out_ndim;
  int32_t out_dtype;
  int64_t out_shape[MILE_MAX_DIMS];
  mile_tensor *grad; /* the output's gradient, accumulated during backward */
  mile_node *dead_next; /* free list while a graph is being freed */
  /* custom nodes */
  mile_custom_backward_fn custom_backward;
  mile_custom_free_fn custom_free;
  void *custom_user;
};

/* Record a node for out when grad mode is on and an input requires grad; *node is
 * set to it (NULL when nothing was recorded). On failure out is left untouched and
 * the caller releases it. */
mile_status mile_record(mile_tensor *out, const char *name, mile_backward_fn backward, int32_t n_inputs,
                        mile_tensor *const *inputs, mile_node **node);
/* Keep t for backward (retained, version noted). Saving the node's own output
 * allocates an alias and can fail with MILE_ERR_NOMEM; saving inputs cannot fail. */
mile_status mile_node_save(mile_node *node, mile_tensor *t);
/* Saved tensor i, or an error when it was modified in place since. */
mile_status mile_node_saved(mile_node *node, int32_t i, mile_tensor **t);
void mile_node_release(mile_node *node);
/* True when some input requires grad and grad mode is on. */
bool mile_any_requires_grad(int32_t n, mile_tensor *const *inputs);
/* Sum g down to the shape (ndim, shape) of a broadcast input. */
mile_status mile_sum_to_shape(mile_tensor **out, mile_tensor *g, int32_t ndim, const int64_t *shape);

/* ---- normal distribution helpers (double precision) ------------------------ */
double mile_normal_cdf_d(double x);
double mile_log_normal_cdf_d(double x);
/* ln Phi(b + d) - ln Phi(b), given lb = ln Phi(b). Far in the left tail (b and b + d
 * below -20) it is computed from the asymptotic series as a difference, without
 * forming b^2: exact to rounding for any finite b (ln Phi(b) itself is -inf below
 * about -1.9e154) and any d that keeps b + d in the tail. */
double mile_log_normal_cdf_shift_d(double b, double lb, double d);
/* phi(x) / Phi(x), stable for very negative x (the derivative of ln Phi). */
double mile_normal_hazard_d(double x);

#endif
