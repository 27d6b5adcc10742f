/* Device access from every CPU: each AP reads the CPU count from fw_cfg (port reads) and prints a line on
 * COM1 (port writes). On a coalesced VM this is the forwarded-I/O path: an edge vCPU's accesses are served
 * by the home node's device bus. */
#include "guest.h"

const char guest_name[] = "ap_io";

static volatile uint32_t agreed, done;
/* fw_cfg is one selector + one data port shared by every CPU: as on real hardware, a read must not
 * interleave with another CPU's. */
static spinlock_t fw_cfg_lock;

static void ap_main(unsigned cpu) {
  spin_lock(&fw_cfg_lock);
  uint16_t n = fw_cfg_read16(FW_CFG_NB_CPUS);
  bool present = fw_cfg_present();
  spin_unlock(&fw_cfg_lock);
  printf("ap_io: CPU %u reads %u CPUs from fw_cfg\n", cpu, n);
  if (present) atomic_add(&agreed, n);
  atomic_inc(&done);
}

void guest_main(void) {
  unsigned n = smp_boot_all(ap_main);
  WAIT_OR_FAIL(atomic_load(&done) == n - 1, 60000u, "only %u of %u APs finished", done, n - 1);
  CHECK_MSG(agreed == (n - 1) * n, "APs read %u in total from fw_cfg, want %u", agreed, (n - 1) * n);
  guest_pass();
}
