/* atomic_file.c - files written whole or not at all: a fresh temporary file next to
 * the target, written through stdio, fsync'ed, renamed over the target, and the
 * directory fsync'ed. Readers see the old file or the new one, never a part; a crash
 * leaves at most a stray "<path>.tmp-<pid>-<n>". Used by every writer of the core. */
#define _POSIX_C_SOURCE 200809L /* fdopen, fileno, fsync */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* "who: path" or "path" for messages. */
#define WHO_FMT "%s%s%s"
#define WHO_ARGS(who, path) (who && *who ? who : ""), (who && *who ? ": " : ""), path

mile_status mile_sink_open(mile_sink *s, const char *path, const char *who) {
  static atomic_uint counter;
  memset(s, 0, sizeof *s);
  size_t size = strlen(path) + 64;
  s->tmp = malloc(size);
  if (!s->tmp) return mile_set_error(MILE_ERR_NOMEM, WHO_FMT ": out of memory", WHO_ARGS(who, path));
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; attempt++) { /* O_EXCL: never reuse a file */
    snprintf(s->tmp, size, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0 || !(s->f = fdopen(fd, "wb"))) {
    mile_status st = mile_set_error(MILE_ERR_IO, WHO_FMT ": cannot create a temporary file next to it: %s",
                                    WHO_ARGS(who, path), strerror(errno));
    if (fd >= 0) close(fd), unlink(s->tmp);
    free(s->tmp);
    s->tmp = NULL;
    return st;
  }
  setvbuf(s->f, NULL, _IOFBF, 1 << 16); /* large writes: datasets run to many MB */
  return MILE_OK;
}

void mile_sink_write(mile_sink *s, const void *p, size_t n) {
  if (s->err || n == 0) return;
  errno = 0;
  if (fwrite(p, 1, n, s->f) != n) s->err = errno ? errno : EIO, s->step = "write";
}

/* Make a rename durable: fsync the directory holding path (best effort). */
static void sync_directory(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else if ((size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else return;
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

mile_status mile_sink_close(mile_sink *s, const char *path, const char *who, mile_status st) {
  errno = 0;
  if (st == MILE_OK && !s->err && fflush(s->f) != 0) s->err = errno ? errno : EIO, s->step = "write";
  if (st == MILE_OK && !s->err && fsync(fileno(s->f)) != 0) s->err = errno, s->step = "fsync";
  if (fclose(s->f) != 0 && st == MILE_OK && !s->err) s->err = errno, s->step = "close";
  if (st == MILE_OK && !s->err && rename(s->tmp, path) != 0) s->err = errno, s->step = "rename";
  if (st == MILE_OK && s->err)
    st = mile_set_error(MILE_ERR_IO, WHO_FMT ": %s failed: %s", WHO_ARGS(who, path), s->step, strerror(s->err));
  if (st != MILE_OK) unlink(s->tmp);
  else sync_directory(path);
  free(s->tmp);
  s->tmp = NULL;
  s->f = NULL;
  return st;
}
