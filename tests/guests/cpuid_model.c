/* The CPU model as the guest sees it: CPUID read on every CPU must show that CPU's APIC id and the model
 * the VMM was asked for. Always: no x2APIC, no TSC deadline, the hypervisor bit. `baseline=1`: no CX16, no
 * PCID, extended leaf 1 ECX = LAHF only; with `strict=1` too (hosts with hardware virtualization), leaf 1
 * ECX = SSE3 | hypervisor and leaf 7 EBX at most SMEP. PVM overrides those last two with the host's values
 * (docs/EMULATION.md), which is why they are separate. `baseline=0`: CX16 is there (host model). */
#include "guest.h"

const char guest_name[] = "cpuid_model";

static volatile uint32_t checked;

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void check_cpu(unsigned cpu) {
  uint32_t l1[4], l7[4];
  cpuid(1, 0, l1);
  cpuid(7, 0, l7);
  uint32_t d0[4], d1[4], e1[4];
  cpuid(0xd, 0, d0);
  cpuid(0xd, 1, d1);
  cpuid(0x80000001, 0, e1);
  printf("cpuid_model: cpu %u leafd.0 eax=%x leafd.1 eax=%x ext1 ecx=%x edx=%x leaf7 edx=%x\n", cpu, d0[0], d1[0],
         e1[2], e1[3], l7[3]);
  printf("cpuid_model: cpu %u leaf1 ecx=%x edx=%x apic=%u leaf7 ebx=%x ecx=%x\n", cpu, l1[2], l1[3], l1[1] >> 24,
         l7[1], l7[2]);
  CHECK_MSG((l1[1] >> 24) == lapic_id(), "cpu %u: CPUID APIC id %u, LAPIC id %u", cpu, l1[1] >> 24, lapic_id());
  CHECK_MSG((l1[2] & (1u << 21)) == 0, "cpu %u: x2APIC advertised", cpu);
  CHECK_MSG((l1[2] & (1u << 24)) == 0, "cpu %u: TSC deadline advertised", cpu);
  CHECK_MSG((l1[2] & (1u << 31)) != 0, "cpu %u: no hypervisor bit", cpu);
  if (cmdline_uint("baseline", 0)) {
    CHECK_MSG((l1[2] & (1u << 13)) == 0, "cpu %u: baseline shows CX16 (leaf 1 ECX %x)", cpu, l1[2]);
    CHECK_MSG((l1[2] & (1u << 17)) == 0, "cpu %u: baseline shows PCID (leaf 1 ECX %x)", cpu, l1[2]);
    CHECK_MSG(e1[2] == 1u, "cpu %u: baseline extended leaf 1 ECX is %x", cpu, e1[2]);
    if (cmdline_uint("strict", 0)) {
      CHECK_MSG(l1[2] == ((1u << 31) | 1u), "cpu %u: baseline leaf 1 ECX is %x", cpu, l1[2]);
      CHECK_MSG((l7[1] & ~(1u << 7)) == 0, "cpu %u: baseline leaf 7 EBX is %x", cpu, l7[1]);
      CHECK_MSG(l7[2] == 0, "cpu %u: baseline leaf 7 ECX is %x", cpu, l7[2]);
    }
  } else {
    CHECK_MSG((l1[2] & (1u << 13)) != 0, "cpu %u: host model without CX16 (leaf 1 ECX %x)", cpu, l1[2]);
  }
  atomic_inc(&checked);
}

static void ap_main(unsigned cpu) { check_cpu(cpu); }

void guest_main(void) {
  unsigned n = smp_boot_all(ap_main);
  check_cpu(0);
  WAIT_OR_FAIL(atomic_load(&checked) == n, 10000u, "only %u of %u CPUs checked CPUID", checked, n);
  guest_pass();
}
