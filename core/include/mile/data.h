/* mile/data.h - intervention datasets: an in-memory table and its CSV file format.
 *
 * A dataset is a table of doubles, one row per environment step, with these
 * columns in this order (the canonical order; files may order them differently):
 *
 *   episode, t                 non-negative integers (episode number, step in it)
 *   s_0 .. s_{n-1}             the observation (n = obs_dim >= 1), finite
 *   ar  | ar_0 .. ar_{d-1}     the robot's action: discrete -> one column holding
 *                              the action value 0..A-1; continuous -> d columns
 *   ah  | ah_0 .. ah_{d-1}     the human's action, same shape as the robot's
 *   nu                         1 when the human intervened, else 0
 *   reward                     finite
 *   done, success              0 or 1
 *   p                          optional: the simulated human's intervention
 *                              probability, in [0, 1]
 *
 * On a step without intervention (nu = 0) the human action columns hold the robot
 * action, bit for bit: every value in a dataset is a finite number (no NaN), and
 * both the loader and mile_dataset_append reject a nu = 0 row whose ah differs
 * from its ar.
 *
 * The CSV file: one header row naming the columns, then one row per step, fields
 * separated by ',', rows ended by LF or CRLF, every row with the header's number of
 * fields. Fields may be quoted ("0.5"). Numbers are decimal (no hex, no NaN, no
 * Inf); mile writes them with "%.17g", so a save/load round trip is bit-exact.
 *
 * Lossless or refused: the exact columns (episode, t, nu, done, success, and the
 * actions of a discrete dataset) hold integers, and a number there must be exactly
 * the double stored: "9007199254740993" (beyond 2^53, it would be read as 2^53) or
 * "1.0000000000000001" (read as 1) is an error naming file:line:column, never a
 * silently different value. The float columns (s_<i>, reward, p, and the actions of
 * a continuous dataset) are real numbers by nature: a decimal there is rounded to
 * the nearest double, as strtod does (and mile's own "%.17g" text reads back bit for
 * bit). A loader may declare more columns float (mile_dataset_load_options) to
 * accept the rounding in an exact column of a file written elsewhere; the value must
 * still pass the column's checks once rounded.
 * The last row must end with a newline (a row cut short by a crash is an error,
 * never silently data). Blank lines are skipped; a leading UTF-8 BOM is ignored.
 * Errors in a file are MILE_ERR_FORMAT with the message
 *   "<file>:<line>:<column>: <problem>"
 * (line: 1-based physical line of the file, counting LF; column: 1-based field
 * index in that row; problems about the header as a whole use column 1), and the
 * problem names the column, e.g.
 *   "runs/a/data.csv:7:3: column 's_0': \"abc\" is not a number".
 *
 * Writes are crash-safe: see mile_dataset_save and mile_dataset_append_file.
 *
 * Plain C declarations that LuaJIT's ffi.cdef accepts. */
#ifndef MILE_DATA_H
#define MILE_DATA_H

#include "mile/tensor.h"
#include "mile/rng.h"

/* Limits of the format: the largest s_/ar_/ah_ index + 1, and the longest field
 * (in bytes) the reader accepts. */
enum { MILE_DATASET_MAX_DIM = 1048576, MILE_DATASET_MAX_FIELD = 1024 };

/* The groups of columns of a dataset. */
typedef enum mile_data_field {
  MILE_DATA_FIELD_EPISODE = 0,
  MILE_DATA_FIELD_T = 1,
  MILE_DATA_FIELD_OBS = 2,
  MILE_DATA_FIELD_ROBOT_ACTION = 3,
  MILE_DATA_FIELD_HUMAN_ACTION = 4,
  MILE_DATA_FIELD_NU = 5,
  MILE_DATA_FIELD_REWARD = 6,
  MILE_DATA_FIELD_DONE = 7,
  MILE_DATA_FIELD_SUCCESS = 8,
  MILE_DATA_FIELD_P = 9,
  MILE_DATA_FIELD_COUNT = 10
} mile_data_field;

/* A dataset in memory: rows of doubles in the canonical column order. Opaque. */
typedef struct mile_dataset mile_dataset;

/* A new empty dataset written to *out (NULL on failure).
 * obs_dim >= 1; action_dim >= 1 (must be 1 when discrete != 0); has_p != 0 adds
 * the p column. Free it with mile_dataset_free.
 * Returns MILE_OK, MILE_ERR_ARGUMENT (bad sizes, NULL out), MILE_ERR_NOMEM. */
MILE_API mile_status mile_dataset_new(mile_dataset **out, int32_t obs_dim, int32_t action_dim, int32_t discrete,
                                      int32_t has_p);
/* Free a dataset. NULL-safe. */
MILE_API void mile_dataset_free(mile_dataset *ds);

/* Number of rows (0 for NULL). */
MILE_API int64_t mile_dataset_rows(const mile_dataset *ds);
/* Number of columns: 2 + obs_dim + 2 * action_dim + 4 (+ 1 with p). */
MILE_API int32_t mile_dataset_cols(const mile_dataset *ds);
MILE_API int32_t mile_dataset_obs_dim(const mile_dataset *ds);
/* Columns per action: 1 for discrete datasets. */
MILE_API int32_t mile_dataset_action_dim(const mile_dataset *ds);
MILE_API int32_t mile_dataset_is_discrete(const mile_dataset *ds);
MILE_API int32_t mile_dataset_has_p(const mile_dataset *ds);
/* Number of discrete actions A (0: unknown, no upper bound is checked). */
MILE_API int32_t mile_dataset_n_actions(const mile_dataset *ds);
/* Set A for a discrete dataset: every action value, now and later, must be < A.
 * n_actions = 0 forgets the bound. Returns MILE_ERR_ARGUMENT for a continuous
 * dataset, n_actions < 0, or a stored action >= n_actions (the message names the
 * 0-based row). */
MILE_API mile_status mile_dataset_set_n_actions(mile_dataset *ds, int32_t n_actions);

/* Name of column `col` (0-based, canonical order: "episode", "s_0", "ar", ...),
 * owned by the dataset; NULL when out of range. */
MILE_API const char *mile_dataset_col_name(const mile_dataset *ds, int32_t col);
/* First column of `field` and its number of columns (width 0 and first -1 for
 * MILE_DATA_FIELD_P without a p column or an unknown field). */
MILE_API int32_t mile_dataset_field_col(const mile_dataset *ds, mile_data_field field);
MILE_API int32_t mile_dataset_field_width(const mile_dataset *ds, mile_data_field field);
/* The rows, row-major (rows x cols doubles), owned by the dataset: valid until the
 * next append or free. NULL for an empty dataset. */
MILE_API const double *mile_dataset_data(const mile_dataset *ds);
/* Number of rows with nu = 1. */
MILE_API int64_t mile_dataset_count_interventions(const mile_dataset *ds);

/* Append `n` rows given row-major in canonical column order (n * cols doubles).
 * Every value is checked as the loader checks a file (finite; integers where
 * integers belong; 0/1 flags; p in [0, 1]; actions < n_actions when known; ah == ar
 * when nu = 0). All rows are checked before any is added: on failure the dataset
 * is unchanged and the message names the row of the batch (0-based) and the
 * column, e.g. "dataset_append: row 3, column 'nu': must be 0 or 1, got 2".
 * Returns MILE_OK, MILE_ERR_ARGUMENT, MILE_ERR_NOMEM. */
MILE_API mile_status mile_dataset_append(mile_dataset *ds, int64_t n, const double *rows);
/* Append every row of `src` to `ds`; the two must have the same columns (and
 * `src`'s actions must respect ds's n_actions). ds == src is allowed. */
MILE_API mile_status mile_dataset_extend(mile_dataset *ds, const mile_dataset *src);

/* A new contiguous tensor of `dtype` holding one field for every row: obs ->
 * [rows, obs_dim]; actions -> [rows] when discrete, [rows, action_dim] when
 * continuous; the other fields -> [rows]. The caller owns *out.
 * Returns MILE_ERR_ARGUMENT for an unknown field or P without a p column. */
MILE_API mile_status mile_dataset_field(mile_tensor **out, const mile_dataset *ds, mile_data_field field,
                                        mile_dtype dtype);

/* A new dataset with the rows rows[0..n-1] (0-based, in that order, repeats
 * allowed) of `ds`, same columns and n_actions. MILE_ERR_RANGE for an index out
 * of range. */
MILE_API mile_status mile_dataset_subset(mile_dataset **out, const mile_dataset *ds, int64_t n, const int64_t *rows);

/* Read and validate the dataset CSV at `path` (see the top of this file) into a new
 * dataset *out. n_actions > 0 also checks discrete actions against A (and sets the
 * dataset's n_actions); 0 checks only that they are non-negative integers.
 * The file is read in chunks; memory is the table plus one row, and the table never
 * takes more rows than the file's size can hold (a row of k fields takes at least 2k
 * bytes) nor more columns than its header names.
 * Returns MILE_OK; MILE_ERR_IO when the file cannot be opened or read ("<path>:
 * <system error>"); MILE_ERR_FORMAT "<path>:<line>:<column>: <problem>";
 * MILE_ERR_NOMEM; MILE_ERR_ARGUMENT for NULL arguments. */
MILE_API mile_status mile_dataset_load(mile_dataset **out, const char *path, int32_t n_actions);
/* Like mile_dataset_load, from `size` bytes at `data`; `label` replaces the path
 * in messages (NULL: "<memory>"). */
MILE_API mile_status mile_dataset_parse(mile_dataset **out, const void *data, size_t size, const char *label,
                                        int32_t n_actions);

/* Options of mile_dataset_load_with / mile_dataset_parse_with. A zeroed struct gives
 * the behaviour of mile_dataset_load(out, path, 0). */
typedef struct mile_dataset_load_options {
  /* as mile_dataset_load's n_actions (>= 0; 0: unknown) */
  int32_t n_actions;
  /* float_columns[0 .. n_float-1]: names of exact columns of the file (as in its
   * header: "t", "episode", "ar", "nu", ...) declared float: their numbers are
   * rounded to the nearest double instead of refused when inexact. Each name must be
   * a column of the file. May be NULL when n_float is 0. */
  int32_t n_float;
  const char *const *float_columns;
  /* a cap on the bytes of the table (rows x columns x 8): a file with more rows is
   * MILE_ERR_NOMEM "<file>:<line>:1: ... exceeds max_bytes ..." before the table
   * grows past it. 0: no cap. */
  int64_t max_bytes;
} mile_dataset_load_options;

/* mile_dataset_load / mile_dataset_parse with options (NULL: all defaults). Also
 * MILE_ERR_ARGUMENT for bad options (n_float < 0, a NULL name, max_bytes < 0), and
 * MILE_ERR_FORMAT "<file>:1:1: float column 'x' is not a column of the file". */
MILE_API mile_status mile_dataset_load_with(mile_dataset **out, const char *path,
                                            const mile_dataset_load_options *options);
MILE_API mile_status mile_dataset_parse_with(mile_dataset **out, const void *data, size_t size, const char *label,
                                             const mile_dataset_load_options *options);

/* Write the whole dataset to `path` (header, then every row; "%.17g" numbers, LF
 * line ends), atomically: into a new temporary file "<path>.tmp-<pid>-<n>" in the
 * same directory, fsync'ed, renamed over `path`, then the directory fsync'ed. A
 * crash leaves either the old file or the new one, never a mix; at worst a stray
 * temporary file, which nothing reads and the next write does not reuse.
 * Returns MILE_OK; MILE_ERR_IO ("<path>: <step> failed: <system error>", the
 * temporary file removed, an existing file untouched); MILE_ERR_NOMEM. */
MILE_API mile_status mile_dataset_save(const mile_dataset *ds, const char *path);

/* Append rows from_row .. rows-1 (0-based) of `ds` to the dataset file at `path`
 * (the per-round append of a training loop). When `path` does not exist it is
 * created with the header and those rows. When it exists its header must name
 * exactly ds's columns in canonical order (as mile writes them) and it must end
 * with a newline; the new file is then built as a temporary copy of the old one
 * plus the new rows, fsync'ed and renamed over `path` (as mile_dataset_save): a
 * crash at any moment leaves the old file or the new one whole, never a half row.
 * The cost is a copy of the file per call. from_row == rows appends nothing (and
 * only creates a missing file). One writer per file: two processes appending to the
 * same path at once lose one of the appends.
 * Returns MILE_OK; MILE_ERR_ARGUMENT (from_row out of 0..rows); MILE_ERR_FORMAT
 * ("<path>:1:<column>: header does not match ..." or "<path>: does not end with a
 * newline ..."); MILE_ERR_IO; MILE_ERR_NOMEM. */
MILE_API mile_status mile_dataset_append_file(const mile_dataset *ds, const char *path, int64_t from_row);

/* ---- weighted sampling (IWR and friends) ---------------------------------------- */

/* Draws row indices with replacement, index i with probability w[i] / sum(w).
 * Holds the cumulative weights (n doubles). Opaque. */
typedef struct mile_sampler mile_sampler;

/* A sampler over the numel(weights) values of `weights` (any shape, read
 * row-major; copied: the tensor may change afterwards). Weights must be finite and
 * >= 0 with a positive finite sum; rows of weight 0 are never drawn.
 * Returns MILE_OK, MILE_ERR_ARGUMENT (with the offending index), MILE_ERR_NOMEM. */
MILE_API mile_status mile_sampler_new(mile_sampler **out, const mile_tensor *weights);
MILE_API void mile_sampler_free(mile_sampler *s);
/* Number of weights. */
MILE_API int64_t mile_sampler_size(const mile_sampler *s);
/* Draw `count` 0-based indices into out[0..count-1]: one uniform draw from `rng`
 * per index (inverse CDF by binary search, O(log n) each), so the same generator
 * state gives the same indices. */
MILE_API mile_status mile_sampler_draw(const mile_sampler *s, mile_rng *rng, int64_t count, int64_t *out);

#endif
