/* alloc.c - tensor storage blocks, with a small cache of freed blocks.
 *
 * A training step allocates the same sizes every iteration; without a cache each
 * large block goes to mmap/munmap and page faults, which cost more than the
 * arithmetic on small networks. Freed blocks are kept per size class (four
 * classes per power of two, at most 25% slack) up to a total cap, and handed
 * out again before asking malloc. A mutex keeps it safe across threads. */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

enum {
  MIN_SHIFT = 6,                 /* smallest class: 64 bytes */
  MAX_SHIFT = 30,                /* blocks above 1 GiB are never cached */
  CLASSES = (MAX_SHIFT + 1) * 4,
  MAX_PER_CLASS = 64,
};
static const size_t CACHE_CAP_BYTES = (size_t)256 << 20;

typedef struct free_block { struct free_block *next; } free_block;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static free_block *cache[CLASSES];
static int32_t cache_count[CLASSES];
static size_t cache_bytes;

/* Under AddressSanitizer freed blocks go straight back to free(): a cached block
 * would hide a use after free of tensor data from it. */
#if defined(__SANITIZE_ADDRESS__)
enum { CACHE_ON = 0 };
#else
enum { CACHE_ON = 1 };
#endif

/* Size class of n bytes and the class's block size. */
static int size_class(size_t n, size_t *block) {
  if (n <= (size_t)1 << MIN_SHIFT) {
    *block = (size_t)1 << MIN_SHIFT;
    return 0;
  }
  int e = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^e < n <= 2^(e+1) */
  size_t quarter = (size_t)1 << (e - 1);                       /* classes 2^e + k 2^(e-2), k = 1..4 */
  size_t k = (n - 1 - ((size_t)1 << e)) / (quarter / 2) + 1;
  *block = ((size_t)1 << e) + k * (quarter / 2);
  return (e - MIN_SHIFT) * 4 + (int)k;
}

void *mile_storage_alloc(size_t nbytes) {
  size_t block;
  int c = size_class(nbytes, &block);
  if (c < CLASSES) {
    pthread_mutex_lock(&cache_lock);
    free_block *b = cache[c];
    if (b) {
      cache[c] = b->next;
      cache_count[c]--;
      cache_bytes -= block;
    }
    pthread_mutex_unlock(&cache_lock);
    if (b) return b;
  }
  void *data = NULL;
  if (posix_memalign(&data, 64, block) != 0) return NULL; /* 64-byte aligned for vector loads */
  return data;
}

void mile_storage_free(void *data, size_t nbytes) {
  if (!data) return;
  size_t block;
  int c = size_class(nbytes, &block);
  if (CACHE_ON && c < CLASSES) {
    pthread_mutex_lock(&cache_lock);
    bool keep = cache_count[c] < MAX_PER_CLASS && cache_bytes + block <= CACHE_CAP_BYTES;
    if (keep) {
      free_block *b = data;
      b->next = cache[c];
      cache[c] = b;
      cache_count[c]++;
      cache_bytes += block;
    }
    pthread_mutex_unlock(&cache_lock);
    if (keep) return;
  }
  free(data);
}

size_t mile_cache_bytes(void) {
  pthread_mutex_lock(&cache_lock);
  size_t n = cache_bytes;
  pthread_mutex_unlock(&cache_lock);
  return n;
}

void mile_cache_empty(void) {
  pthread_mutex_lock(&cache_lock);
  for (int c = 0; c < CLASSES; c++) {
    while (cache[c]) {
      free_block *b = cache[c];
      cache[c] = b->next;
      free(b);
    }
    cache_count[c] = 0;
  }
  cache_bytes = 0;
  pthread_mutex_unlock(&cache_lock);
}
