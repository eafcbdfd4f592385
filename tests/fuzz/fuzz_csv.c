/* fuzz_csv.c - libFuzzer harness of the dataset CSV reader (core/src/data_csv.c).
 *
 * The input is the bytes of a dataset file. Parsed without and with an action
 * bound; a dataset that loads is read back through every accessor, a field tensor of
 * each group and a subset, so that a table the reader accepts is also a table the
 * rest of the core can use. */
#include <stdint.h>
#include <stdlib.h>

#include "mile/mile.h"

static void use(const mile_dataset *ds) {
  int64_t rows = mile_dataset_rows(ds);
  int32_t cols = mile_dataset_cols(ds);
  const double *data = mile_dataset_data(ds);
  double sum = 0;
  for (int64_t i = 0; data != NULL && i < rows * cols; i++)
    sum += data[i];
  (void)sum;
  for (int32_t c = 0; c < cols; c++)
    if (mile_dataset_col_name(ds, c) == NULL) abort();
  for (int f = 0; f < MILE_DATA_FIELD_COUNT; f++) {
    mile_tensor *t = NULL;
    if (mile_dataset_field(&t, ds, (mile_data_field)f, f % 2 ? MILE_FLOAT32 : MILE_FLOAT64) == MILE_OK)
      mile_tensor_release(t);
  }
  (void)mile_dataset_count_interventions(ds);
  if (rows > 0) {
    int64_t pick[3] = {rows - 1, 0, rows / 2};
    mile_dataset *sub = NULL;
    if (mile_dataset_subset(&sub, ds, 3, pick) != MILE_OK) abort();
    if (mile_dataset_extend(sub, ds) != MILE_OK) abort();
    mile_dataset_free(sub);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mile_dataset *ds = NULL;
  if (mile_dataset_parse(&ds, data, size, "fuzz.csv", 0) == MILE_OK) {
    use(ds);
    mile_dataset_free(ds);
  }
  ds = NULL;
  if (mile_dataset_parse(&ds, data, size, NULL, 3) == MILE_OK) {
    use(ds);
    mile_dataset_free(ds);
  }
  return 0;
}
