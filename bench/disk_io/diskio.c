/* A guest-side disk load for the disk benchmark: one stream of O_DIRECT reads or writes of BS bytes, sequential
 * or at random (fixed-seed) offsets within the first SPAN MiB of DEV, timed with CLOCK_MONOTONIC in the guest.
 * Built static so it runs in the test initramfs's busybox world; it reaches the guest on a small ext2 disk.
 *
 * usage: diskio DEV seqread|seqwrite|randread|randwrite BS COUNT SPAN_MIB
 * prints: DISKIO <mode> bs=<BS> count=<COUNT> seconds=<s> MBps=<x> IOPS=<y>   (exit 1 on any I/O error) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* O_DIRECT */
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: diskio DEV seqread|seqwrite|randread|randwrite BS COUNT SPAN_MIB\n");
    return 2;
  }
  const char* mode = argv[2];
  const int write = strstr(mode, "write") != NULL;
  const int random = strncmp(mode, "rand", 4) == 0;
  const size_t bs = strtoul(argv[3], NULL, 0);
  const long count = strtol(argv[4], NULL, 0);
  const uint64_t span = strtoull(argv[5], NULL, 0) << 20;
  if (bs == 0 || bs % 512 != 0 || count <= 0 || span < bs) {
    fprintf(stderr, "diskio: bad BS, COUNT or SPAN\n");
    return 2;
  }
  int fd = open(argv[1], (write ? O_WRONLY : O_RDONLY) | O_DIRECT);
  if (fd < 0) {
    perror(argv[1]);
    return 1;
  }
  void* buf;
  if (posix_memalign(&buf, 4096, bs) != 0) return 1;
  memset(buf, 0x5a, bs);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  const uint64_t slots = span / bs;
  const double t0 = Now();
  for (long i = 0; i < count; ++i) {
    uint64_t slot = (uint64_t)i % slots;
    if (random) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      slot = x % slots;
    }
    ssize_t n = write ? pwrite(fd, buf, bs, (off_t)(slot * bs)) : pread(fd, buf, bs, (off_t)(slot * bs));
    if (n != (ssize_t)bs) {
      fprintf(stderr, "diskio: %s at %llu: %zd\n", mode, (unsigned long long)(slot * bs), n);
      return 1;
    }
  }
  if (write && fsync(fd) != 0) {
    perror("fsync");
    return 1;
  }
  const double s = Now() - t0;
  printf("DISKIO %s bs=%zu count=%ld seconds=%.6f MBps=%.3f IOPS=%.1f\n", mode, bs, count, s,
         (double)bs * (double)count / s / 1e6, (double)count / s);
  return 0;
}
