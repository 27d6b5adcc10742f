/* Page tables changed by one CPU and used by all (docs/DSM.md, "Shadow paging"): the guest maps 16 slots of 4 KiB
 * at 4 GiB through a page table of its own, each slot onto one of 8 frames that carry their own mark. For
 * rounds=<r> (default 200) rounds, CPU 0 points slot r % 16 at another frame and announces the round; every CPU,
 * CPU 0 too, then drops its own translation of that slot (invlpg) and reads through it: each must see the new
 * frame's mark. Every CPU first reads every slot, so that a stale translation would be there to use. Only CPU 0
 * writes the table, as an OS changes a mapping on one CPU and others use it: a CPU that wrote the table itself
 * would make KVM's shadow paging (below) resync that table on its own node and hide the fault.
 * Where the CPUs run on several nodes the page table is one page the DSM keeps coherent: the hardware walk (nested
 * paging, EPT) reads it from guest memory and passes; KVM's shadow paging keeps a copy derived from the page
 * that the DSM's replacement of its contents does not reach, so a CPU on another node would read the old frame. */
#include "guest.h"

const char guest_name[] = "page_tables";

#define SLOTS 16
#define FRAMES 8
#define WINDOW 0x100000000UL /* 4 GiB: PDPT entry 4, unused by the identity map of the low 4 GiB */
#define PTE_PRESENT_WRITABLE 0x3UL
#define MARK(f) (0x9A6E7AB1E0000000ULL | (uint64_t)(f))

extern uint64_t guest_pml4[512];

static uint64_t window_pd[512] __attribute__((aligned(4096)));
static uint64_t window_pt[512] __attribute__((aligned(4096)));
static uint64_t frames[FRAMES][512] __attribute__((aligned(4096)));

static volatile uint32_t announced, acks, start;
static volatile uint32_t wrong[GUEST_MAX_CPUS];
static volatile uint64_t first_wrong[GUEST_MAX_CPUS];
static uint32_t rounds, ncpus, timeout_ms;

static unsigned slot_of(uint32_t r) { return r % SLOTS; }
static unsigned frame_of(uint32_t r) { return (r * 5 + 3) % FRAMES; } /* never the slot's previous frame */
static volatile uint64_t *slot_va(unsigned s) { return (volatile uint64_t *)(WINDOW + (uint64_t)s * 4096); }
static void invlpg(volatile void *va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

static void run(unsigned cpu) {
  while (!atomic_load(&start)) cpu_relax();
  for (unsigned s = 0; s < SLOTS; s++) (void)*slot_va(s); /* every translation cached before it changes */
  for (uint32_t r = 0; r < rounds; r++) {
    if (cpu == 0) {
      WAIT_OR_FAIL(atomic_load(&acks) == r * ncpus, timeout_ms, "round %u: %u of %u acknowledgements", r, acks,
                   r * ncpus);
      window_pt[slot_of(r)] = (uint64_t)frames[frame_of(r)] | PTE_PRESENT_WRITABLE;
      atomic_store(&announced, r + 1);
    }
    WAIT_OR_FAIL(atomic_load(&announced) > r, timeout_ms, "CPU %u: round %u never announced", cpu, r);
    invlpg(slot_va(slot_of(r)));
    const uint64_t seen = *slot_va(slot_of(r));
    if (seen != MARK(frame_of(r)) && wrong[cpu]++ == 0) first_wrong[cpu] = ((uint64_t)r << 32) | (uint32_t)seen;
    atomic_inc(&acks);
  }
}

static void ap_main(unsigned cpu) { run(cpu); }

void guest_main(void) {
  rounds = cmdline_uint("rounds", 200);
  timeout_ms = cmdline_uint("timeout_s", 60) * 1000u;
  for (unsigned f = 0; f < FRAMES; f++) frames[f][0] = MARK(f);
  for (unsigned s = 0; s < SLOTS; s++) window_pt[s] = (uint64_t)frames[s % FRAMES] | PTE_PRESENT_WRITABLE;
  window_pd[0] = (uint64_t)window_pt | PTE_PRESENT_WRITABLE;
  /* The identity map's PDPT (PML4 entry 0) gets entry 4; a not-present entry is never cached, so no flush. */
  uint64_t *pdpt = (uint64_t *)(guest_pml4[0] & ~0xfffUL);
  pdpt[4] = (uint64_t)window_pd | PTE_PRESENT_WRITABLE;
  ncpus = smp_boot_all(ap_main);
  const uint64_t t0 = rdtsc();
  atomic_store(&start, 1);
  run(0);
  WAIT_OR_FAIL(atomic_load(&acks) == rounds * ncpus, timeout_ms, "%u of %u acknowledgements", acks, rounds * ncpus);
  uint32_t total = 0;
  for (unsigned c = 0; c < ncpus; c++) {
    if (wrong[c] != 0) {
      printf("page_tables: CPU %u read a stale frame %u times; first in round %u (read %x)\n", c, wrong[c],
             (uint32_t)(first_wrong[c] >> 32), (uint32_t)first_wrong[c]);
    }
    total += wrong[c];
  }
  printf("page_tables: %u remappings on %u CPUs in %lu ms\n", rounds, ncpus, tsc_to_us(rdtsc() - t0) / 1000);
  CHECK_MSG(total == 0, "%u reads through a changed page table entry saw the old frame", total);
  printf("page_tables: every CPU read every new frame after its invlpg\n");
  guest_pass();
}
