/* Exit-cost benchmark guest: N port writes to COM1's scratch register (0x3ff), each a full trip through
 * KVM_RUN, the vCPU loop, the PIO bus and the UART device. Prints the TSC cycles per exit. "n=<count>" on the
 * command line sets N (default 20000). */
#include "guest.h"

const char guest_name[] = "exit_loop";

void guest_main(void) {
  uint32_t n = 20000;
  cmdline_has("n", &n);
  outb(0x3ff, 0); /* warm the path once */
  uint64_t start = rdtsc();
  for (uint32_t i = 0; i < n; ++i) outb(0x3ff, (uint8_t)i);
  uint64_t cycles = rdtsc() - start;
  printf("exit_loop: exits=%u cycles=%lu cycles_per_exit=%lu\n", n, cycles, cycles / n);
  guest_exit(0);
}
