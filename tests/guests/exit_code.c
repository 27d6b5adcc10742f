/* Exits through isa-debug-exit with the value of "exit=<n>" on the command line (the runner checks the
 * VMM's exit status is (n << 1) | 1). Without the argument it fails. */
#include "guest.h"

const char guest_name[] = "exit_code";

void guest_main(void) {
  uint32_t v;
  if (!cmdline_has("exit", &v)) guest_fail("no exit=<n> on the command line \"%s\"", cmdline());
  if (v > 255) guest_fail("exit=%u does not fit the 8-bit debug-exit value", v);
  printf("exit_code: exiting with %u\n", v);
  guest_exit((uint8_t)v);
}
