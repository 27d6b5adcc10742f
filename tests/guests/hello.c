/* Serial hello: the smallest end-to-end check (Multiboot entry, COM1 output, isa-debug-exit). */
#include "guest.h"

const char guest_name[] = "hello";

void guest_main(void) {
  printf("Hello from the coalesce test guest\n");
  printf("hello: multiboot cmdline \"%s\"\n", cmdline());
  guest_pass();
}
