/* Memory larger than the home's allowance (docs/COALESCENCE.md, "Memory edges"): the BSP fills mb=<n> MiB of RAM
 * from 32 MiB up (default 64) with a pattern that names each word's address and the pass, passes=<p> times (default
 * 2), checking the previous pass's words as it overwrites them, then reads the whole span once more. With
 * --home-memory below the span, most of these pages are spilled to a memory edge and fetched back on the next
 * pass: every word must still be the last one written. Prints the time of each pass. */
#include "guest.h"

const char guest_name[] = "memory_walk";

#define SPAN_BASE 0x2000000UL /* 32 MiB: above the kernel image, stacks and tables */

static uint64_t pattern(uint64_t addr, uint32_t pass) { return (addr * 0x9E3779B97F4A7C15ULL) ^ (0xC0A1E5CEULL + pass); }

void guest_main(void) {
  const uint64_t mb = cmdline_uint("mb", 64);
  const uint32_t passes = cmdline_uint("passes", 2);
  const uint64_t end = SPAN_BASE + (mb << 20);
  /* One word per 512 bytes: every page is written 8 times per pass, and the walk stays quick under TCG. */
  const uint64_t step = 512;
  uint64_t wrong = 0;
  for (uint32_t pass = 0; pass < passes; pass++) {
    const uint64_t t0 = rdtsc();
    for (uint64_t a = SPAN_BASE; a < end; a += step) {
      volatile uint64_t* w = (volatile uint64_t*)a;
      if (pass > 0 && *w != pattern(a, pass - 1)) {
        if (wrong++ < 4) printf("memory_walk: pass %u: %lx holds %lx, expected %lx\n", pass, a, *w, pattern(a, pass - 1));
      }
      *w = pattern(a, pass);
    }
    printf("memory_walk: pass %u over %lu MiB in %lu ms\n", pass, mb, tsc_to_us(rdtsc() - t0) / 1000);
  }
  for (uint64_t a = SPAN_BASE; a < end; a += step) {
    if (*(volatile uint64_t*)a != pattern(a, passes - 1)) wrong++;
  }
  CHECK_MSG(wrong == 0, "%lu words were not the last value written", wrong);
  printf("memory_walk: %lu MiB, %u passes, every word read back\n", mb, passes);
  guest_pass();
}
