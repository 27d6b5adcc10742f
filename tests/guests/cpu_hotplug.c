/* CPU hotplug as the DSDT's methods drive it, without ACPI: the guest polls the hotplug controller
 * (devmodel/cpu_hotplug.h, registers in hypervisor/base/platform.h) where Linux would take the Generic Event
 * Device's interrupt and run _EVT. So the VMM's half (a CPU plugged in where it waits, on an edge node too,
 * the remove request, the eject) is tested where Debian over several nodes is too slow (docs/HOTPLUG.md).
 *
 * Expects --vcpus 1 --max-vcpus >= 2 and the host to plug in CPU 1 (`ctl setvcpus 2`, or `ctl attach` of an
 * edge with vCPU 1), then to ask for it back (`ctl setvcpus 1`, which returns once the guest ejected it).
 * With cpu2=1 (and --max-vcpus 3) the host also plugs in CPU 2 once CPU 1 ran (`ctl setvcpus 3`): the guest
 * starts it too, before CPU 1 is asked back, and CPU 2 stays present to the end (parked).
 * Command line: wait_ms=<ms> (default 120000) for each host step; cpu2=0|1 (default 0). */
#include "guest.h"

const char guest_name[] = "cpu_hotplug";

#define HOTPLUG_PORT 0x620
#define PRESENT 0x00
#define INSERT 0x20
#define REMOVE 0x40
#define ACK_INSERT 0x60
#define ACK_REMOVE 0x61
#define EJECT 0x62

static bool bit(uint16_t bitmap, unsigned cpu) { return (inb(HOTPLUG_PORT + bitmap + cpu / 8) >> (cpu % 8)) & 1; }

static volatile uint32_t ap_work, ap_park, ap_parked;

static void ap_main(unsigned cpu) {
  printf("cpu_hotplug: CPU %u runs (APIC id %u)\n", cpu, lapic_id());
  for (int i = 0; i < 1000; i++) atomic_inc(&ap_work);
  while (!atomic_load(&ap_park)) cpu_relax();
  /* Offline, as Linux parks a CPU it gives up: interrupts off, halted. */
  atomic_inc(&ap_parked);
  for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}

void guest_main(void) {
  const uint32_t wait_ms = cmdline_uint("wait_ms", 120000);
  const bool cpu2 = cmdline_uint("cpu2", 0) != 0;
  CHECK_MSG(fw_cfg_cpu_count() == 1, "fw_cfg reports %u CPUs at boot, expected 1", fw_cfg_cpu_count());
  CHECK_MSG(bit(PRESENT, 0) && !bit(PRESENT, 1), "present bitmap %#x, expected CPU 0 alone", inb(HOTPLUG_PORT));
  CHECK_MSG(!bit(INSERT, 1) && !bit(REMOVE, 1), "events pending at boot");
  lapic_enable();

  printf("cpu_hotplug: waiting for CPU 1\n");
  WAIT_OR_FAIL(bit(INSERT, 1), wait_ms, "CPU 1 was never plugged in");
  CHECK_MSG(bit(PRESENT, 1), "CPU 1 inserted but not present");
  outb(HOTPLUG_PORT + ACK_INSERT, 1);
  CHECK_MSG(!bit(INSERT, 1), "the insert event stays pending after its acknowledgement");
  CHECK_MSG(smp_start_one(1, ap_main, wait_ms), "CPU 1 was plugged in but did not start");
  WAIT_OR_FAIL(atomic_load(&ap_work) == 1000, wait_ms, "CPU 1 did %u of 1000 increments", ap_work);
  printf("cpu_hotplug: CPU 1 plugged in and ran\n");

  if (cpu2) {
    printf("cpu_hotplug: waiting for CPU 2\n");
    WAIT_OR_FAIL(bit(INSERT, 2), wait_ms, "CPU 2 was never plugged in");
    CHECK_MSG(bit(PRESENT, 2), "CPU 2 inserted but not present");
    outb(HOTPLUG_PORT + ACK_INSERT, 2);
    CHECK_MSG(smp_start_one(2, ap_main, wait_ms), "CPU 2 was plugged in but did not start");
    WAIT_OR_FAIL(atomic_load(&ap_work) == 2000, wait_ms, "CPUs 1 and 2 did %u of 2000 increments", ap_work);
    printf("cpu_hotplug: CPU 2 plugged in and ran\n");
  }

  printf("cpu_hotplug: waiting for the request to give CPU 1 back\n");
  WAIT_OR_FAIL(bit(REMOVE, 1), wait_ms, "the host never asked for CPU 1 back");
  outb(HOTPLUG_PORT + ACK_REMOVE, 1);
  CHECK_MSG(!bit(REMOVE, 1) && bit(PRESENT, 1), "after acknowledging the request CPU 1 must stay present");
  atomic_store(&ap_park, 1);
  /* Every AP parks on the flag: CPU 1 (and CPU 2) must have before CPU 1 is ejected. */
  const uint32_t aps = cpu2 ? 2 : 1;
  WAIT_OR_FAIL(atomic_load(&ap_parked) == aps, wait_ms, "%u of %u APs parked", ap_parked, aps);
  outb(HOTPLUG_PORT + EJECT, 1);
  CHECK_MSG(!bit(PRESENT, 1), "CPU 1 still present after _EJ0's write");
  /* What a guest may write wrong changes nothing: the bootstrap processor cannot be ejected. */
  outb(HOTPLUG_PORT + EJECT, 0);
  CHECK_MSG(bit(PRESENT, 0), "CPU 0 was ejected");
  if (cpu2) CHECK_MSG(bit(PRESENT, 2), "CPU 2 was ejected with CPU 1");
  printf("cpu_hotplug: CPU 1 given back\n");
  guest_pass();
}
