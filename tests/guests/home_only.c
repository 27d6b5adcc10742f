/* Home-only memory (--home-only-memory 0x1000000+4K, docs/SECURITY.md): the BSP writes a marker into the page at
 * 16 MiB; each AP waits for it, writes eight words of its own there, reads them back, and the BSP checks them
 * all. On a coalesced VM with the page home-only, an edge node maps no memory at 16 MiB: each of an edge vCPU's
 * loads and stores there exits and is forwarded to home, which performs it on the guest's RAM, and the DSM
 * refuses to put the page's contents on the wire. Plain 64-bit moves only (forwarded accesses are emulated
 * one instruction at a time; nothing there may be code or a page table). On one node it is ordinary RAM. Each AP
 * prints the time of its 16 accesses: the cost of a forwarded access where its node holds no memory there. */
#include "guest.h"

const char guest_name[] = "home_only";

#define HOME_ONLY_PAGE ((volatile uint64_t*)0x1000000UL)
#define MARKER 0x5EC2E7B5A0000001ULL

static volatile uint32_t done, mismatches;

static uint64_t word_of(unsigned cpu, unsigned i) { return 0xC0A1E5CE00000000ULL | (cpu << 8) | i; }

static void ap_main(unsigned cpu) {
  volatile uint64_t* page = HOME_ONLY_PAGE;
  while (page[0] != MARKER) cpu_relax();
  const uint64_t t0 = rdtsc();
  for (unsigned i = 0; i < 8; i++) page[cpu * 8 + i] = word_of(cpu, i);
  for (unsigned i = 0; i < 8; i++) {
    if (page[cpu * 8 + i] != word_of(cpu, i)) atomic_inc(&mismatches);
  }
  const uint64_t us = tsc_to_us(rdtsc() - t0);
  printf("home_only: CPU %u: 16 accesses in %lu us (%lu ns each)\n", cpu, us, us * 1000 / 16);
  atomic_inc(&done);
}

void guest_main(void) {
  volatile uint64_t* page = HOME_ONLY_PAGE;
  page[0] = MARKER;
  unsigned n = smp_boot_all(ap_main);
  WAIT_OR_FAIL(atomic_load(&done) == n - 1, 120000u, "only %u of %u APs finished", done, n - 1);
  unsigned checked = 0;
  for (unsigned cpu = 1; cpu < n; cpu++) {
    for (unsigned i = 0; i < 8; i++, checked++) {
      CHECK_MSG(page[cpu * 8 + i] == word_of(cpu, i), "CPU %u word %u: %lx", cpu, i, page[cpu * 8 + i]);
    }
  }
  CHECK_MSG(mismatches == 0, "%u words read back wrong by the APs", mismatches);
  printf("home_only: %u APs wrote and read back %u words in the page at 16 MiB\n", n - 1, checked);
  guest_pass();
}
