/* mile/io.h - checkpoints in the safetensors format.
 *
 * A safetensors file is, byte for byte:
 *   - 8 bytes: N, the header length, an unsigned little-endian 64-bit integer;
 *   - N bytes: a UTF-8 JSON object, padded at its end with spaces (0x20):
 *       {"__metadata__": {"key": "value", ...},
 *        "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 *     where begin/end are byte offsets into the data section (end exclusive);
 *   - the data section: every tensor's elements, row-major, little-endian, with no
 *     gaps and nothing after the last tensor.
 * This is the format of Hugging Face's `safetensors` package, so PyTorch and NumPy
 * read mile's files with safetensors.torch.load_file / safetensors.numpy.load_file.
 *
 * mile writes F32 and F64 tensors (its two dtypes), the tensors in the order given,
 * "__metadata__" first (left out when there is no metadata), a compact header padded
 * so that the data section starts at a multiple of 8 bytes. The same inputs give
 * the same bytes.
 *
 * mile reads F32 and F64 as they are, and F16 and BF16 converted to float32 (exact:
 * every F16 and BF16 value is a float32 value). Every other dtype (I64, BOOL, F8_*,
 * ...) fails with MILE_ERR_FORMAT "unsupported dtype". The reader trusts nothing in
 * the file: see mile_safetensors_load for what it checks.
 *
 * Plain C declarations that LuaJIT's ffi.cdef accepts. */
#ifndef MILE_IO_H
#define MILE_IO_H

#include "mile/tensor.h"

/* The largest header the reader accepts (the limit of the reference implementation). */
enum { MILE_SAFETENSORS_MAX_HEADER = 100000000 };

/* A loaded file: names, tensors and metadata. Opaque; read it with the accessors
 * below and free it with mile_safetensors_free. */
typedef struct mile_safetensors mile_safetensors;

/* Write `count` tensors and `n_metadata` metadata entries to `path`, atomically.
 *
 * names[i] names tensors[i]; names must be non-empty UTF-8, unique and not
 * "__metadata__". Tensors may be any view (strided, expanded); their elements are
 * written row-major in the tensor's dtype (F32 or F64). metadata_keys[i] maps to
 * metadata_values[i]; both UTF-8, keys unique. The arrays may be NULL when their
 * count is 0. Nothing is retained: the caller keeps ownership of everything.
 *
 * The file is written to a temporary file in the same directory
 * ("<path>.tmp-<pid>-<n>"), flushed, fsync'ed and renamed over `path`; on any
 * failure the temporary file is removed and an existing file at `path` is left as
 * it was. The new file has the default mode (0666 less the umask); a symbolic link
 * at `path` is replaced, not followed.
 *
 * Returns MILE_OK; MILE_ERR_ARGUMENT for a NULL path or array, a bad name or key,
 * a NULL tensor, a negative count; MILE_ERR_IO when the file cannot be created,
 * written, synced or renamed (the message names the path and the system error);
 * MILE_ERR_NOMEM. */
MILE_API mile_status mile_safetensors_save(const char *path, int32_t count, const char *const *names,
                                           mile_tensor *const *tensors, int32_t n_metadata,
                                           const char *const *metadata_keys, const char *const *metadata_values);

/* Read the safetensors file at `path` into a new handle written to *out (NULL on
 * failure). Everything is read and checked before MILE_OK is returned; the handle
 * does not keep the file open.
 *
 * Checked: the file is a regular file of at least 8 bytes; the header length is at
 * most MILE_SAFETENSORS_MAX_HEADER and fits in the file; the header is valid UTF-8
 * JSON (no duplicate keys) whose top level is an object; "__metadata__", if
 * present, is an object of strings without NUL (a "\u0000" in a value is an error
 * naming the key, not a value cut short); every other entry is an object with exactly the
 * keys "dtype" (a supported dtype), "shape" (at most MILE_MAX_DIMS non-negative
 * integers) and "data_offsets" ([begin, end], integers, begin <= end); end - begin
 * equals numel * element size; the tensors cover the data section exactly (sorted
 * by offset, each begins where the previous ended: no overlap, no hole, no byte
 * after the last one); the bytes the tensors take in memory (F16/BF16 as float32)
 * fit in the thread's allocation budget (mile_alloc_budget), when one is set. So
 * nothing is allocated beyond what the file's size justifies, and a file over the
 * budget fails (MILE_ERR_NOMEM, the budget unchanged) before its first tensor is
 * allocated.
 *
 * Returns MILE_OK; MILE_ERR_IO when the file cannot be opened or read (message
 * "load_safetensors: <path>: <system error>"); MILE_ERR_FORMAT for a malformed file
 * (message "load_safetensors: <path>: <problem>", naming the tensor when there is
 * one); MILE_ERR_ARGUMENT for NULL arguments; MILE_ERR_NOMEM. */
MILE_API mile_status mile_safetensors_load(mile_safetensors **out, const char *path);

/* Like mile_safetensors_load, from `size` bytes at `data` (copied: the buffer may
 * be freed after the call). `label` names the buffer in messages (NULL: "<memory>"). */
MILE_API mile_status mile_safetensors_parse(mile_safetensors **out, const void *data, size_t size, const char *label);

/* Free a handle and drop its references to its tensors (tensors retained by the
 * caller stay alive). NULL-safe. */
MILE_API void mile_safetensors_free(mile_safetensors *st);

/* Number of tensors. The tensors are numbered 0..count-1 in the order of their
 * data in the file (for a file mile wrote: the order they were given to save). */
MILE_API int32_t mile_safetensors_count(const mile_safetensors *st);
/* Name of tensor i, owned by the handle; NULL when i is out of range. */
MILE_API const char *mile_safetensors_name(const mile_safetensors *st, int32_t i);
/* Tensor i (contiguous, float32 or float64), borrowed from the handle: valid until
 * mile_safetensors_free unless the caller takes a reference with mile_tensor_retain.
 * NULL when i is out of range. */
MILE_API mile_tensor *mile_safetensors_tensor(const mile_safetensors *st, int32_t i);
/* The dtype tensor i had in the file ("F32", "F64", "F16" or "BF16"); a static
 * string. NULL when i is out of range. */
MILE_API const char *mile_safetensors_file_dtype(const mile_safetensors *st, int32_t i);
/* Index of the tensor called `name`, or -1. */
MILE_API int32_t mile_safetensors_find(const mile_safetensors *st, const char *name);

/* Number of "__metadata__" entries (0 when the file has none). Entries are
 * numbered in the order they appear in the header. */
MILE_API int32_t mile_safetensors_metadata_count(const mile_safetensors *st);
/* Key / value of metadata entry i, owned by the handle; NULL when i is out of range. */
MILE_API const char *mile_safetensors_metadata_key(const mile_safetensors *st, int32_t i);
MILE_API const char *mile_safetensors_metadata_value(const mile_safetensors *st, int32_t i);
/* The value stored under `key`, owned by the handle, or NULL when there is none. */
MILE_API const char *mile_safetensors_metadata_get(const mile_safetensors *st, const char *key);

#endif
