/* Ends the VM the way an ACPI OS powers off: SLP_TYP = S5 with SLP_EN in the PM1a control register (the
 * FADT's block at 0x604). The VMM must exit with status 0. "mode=triple" instead makes the CPU triple-fault
 * (an empty IDT, then an exception): the VMM must exit non-zero with a register dump. */
#include "guest.h"

const char guest_name[] = "poweroff";

void guest_main(void) {
  if (cmdline_uint("triple", 0)) {
    printf("poweroff: loading an empty IDT and faulting\n");
    struct __attribute__((packed)) {
      uint16_t limit;
      uint64_t base;
    } empty = {0, 0};
    __asm__ volatile("lidt %0; int3" ::"m"(empty));
    guest_fail("still running after a triple fault");
  }
  printf("poweroff: ACPI S5\n");
  outw(0x604, (uint16_t)((5u << 10) | (1u << 13)));
  guest_fail("still running after the S5 write");
}
