/* fuzz_safetensors.c - libFuzzer harness of the safetensors reader
 * (core/src/safetensors.c).
 *
 * The input is the bytes of a file. A file that loads is read back through every
 * accessor; each tensor's bytes are summed (ASan sees a read past its storage) and
 * looked up by name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mile/mile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mile_safetensors *st = NULL;
  if (mile_safetensors_parse(&st, data, size, "fuzz.safetensors") != MILE_OK) {
    if (st != NULL) abort(); /* failure leaves *out NULL */
    return 0;
  }
  int32_t n = mile_safetensors_count(st);
  for (int32_t i = 0; i < n; i++) {
    const char *name = mile_safetensors_name(st, i);
    mile_tensor *t = mile_safetensors_tensor(st, i);
    if (name == NULL || t == NULL || mile_safetensors_file_dtype(st, i) == NULL) abort();
    if (mile_safetensors_find(st, name) != i || !mile_is_contiguous(t)) abort();
    const unsigned char *bytes = mile_data(t);
    size_t nbytes = (size_t)mile_numel(t) * mile_dtype_size((mile_dtype)t->dtype);
    unsigned sum = 0;
    for (size_t b = 0; bytes != NULL && b < nbytes; b++)
      sum += bytes[b];
    (void)sum;
  }
  if (mile_safetensors_name(st, n) != NULL || mile_safetensors_tensor(st, -1) != NULL) abort();
  int32_t m = mile_safetensors_metadata_count(st);
  for (int32_t i = 0; i < m; i++) {
    const char *key = mile_safetensors_metadata_key(st, i), *value = mile_safetensors_metadata_value(st, i);
    if (key == NULL || value == NULL || strcmp(mile_safetensors_metadata_get(st, key), value) != 0) abort();
  }
  mile_safetensors_free(st);
  return 0;
}
