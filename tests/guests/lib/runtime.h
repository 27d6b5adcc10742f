/* Boot, CPU tables, interrupt dispatch, exit codes, command line. */
#pragma once

#include "layout.h"
#include "types.h"

/* Exit codes written to isa-debug-exit (port 0xf4); the VMM exits with (code << 1) | 1. */
#define GUEST_EXIT_PASS 0      /* process status 1 */
#define GUEST_EXIT_FAIL 1      /* status 3: a check failed */
#define GUEST_EXIT_EXCEPTION 2 /* status 5: unexpected CPU exception or interrupt vector */
#define GUEST_EXIT_TIMEOUT 3   /* status 7: something the guest waited for never happened */
#define GUEST_EXIT_ENV 4       /* status 9: boot environment wrong (multiboot magic, fw_cfg, CPU count) */
#define DEBUG_EXIT_PORT 0xf4

/* The interrupted context, as built by the stubs in entry.S (registers, vector, error code, CPU frame). */
struct irq_frame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rdi, rsi, rbp, rbx, rdx, rcx, rax;
  uint64_t vector, error_code;
  uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*irq_handler_fn)(struct irq_frame *frame);

/* Each guest defines its name (used in PASS/FAIL lines) and its main, run on the BSP with interrupts off. */
extern const char guest_name[];
void guest_main(void);

/* Installs a handler for `vector` (0-255, exceptions included; vector 2 is NMI). Handlers of LAPIC
 * interrupts must call lapic_eoi() themselves. */
void irq_set_handler(uint8_t vector, irq_handler_fn fn);

NORETURN void guest_exit(uint8_t code);
NORETURN void guest_pass(void); /* prints "<name>: PASS", exits 0 */
NORETURN void guest_fail_code(uint8_t code, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define guest_fail(...) guest_fail_code(GUEST_EXIT_FAIL, __VA_ARGS__)
#define CHECK(cond) \
  do { \
    if (!(cond)) guest_fail("check `%s` failed at %s:%d", #cond, __FILE__, __LINE__); \
  } while (0)
#define CHECK_MSG(cond, ...)                      \
  do {                                            \
    if (!(cond)) guest_fail_code(GUEST_EXIT_FAIL, __VA_ARGS__); \
  } while (0)
/* How long a delivery (an IPI, an NMI, a timer interrupt, an AP's acknowledgement) may take before a test calls
 * it lost: delivery_timeout_s=N on the command line, 10 s by default. A liveness bound, not a latency check: where
 * vCPUs sit on different nodes under the nested VM's TCG, a cross-node round trip took 283 ms and a round of
 * all-to-all IPIs over 2 s (a counter page moving between three nodes), so 2 s failed tests on a loaded host while
 * nothing was lost; on a host running two nested VMs at once 10 s failed one CI run (2026-12-07: three nodes, an
 * all-to-all round), so the multi-node tests pass 60 s there. A lost delivery still fails. */
#define DELIVERY_TIMEOUT_MS delivery_timeout_ms()
uint32_t delivery_timeout_ms(void);
/* Waits for `cond` up to `ms`, failing with GUEST_EXIT_TIMEOUT and the message otherwise. */
#define WAIT_OR_FAIL(cond, ms, ...)                                          \
  do {                                                                       \
    if (!WAIT_UNTIL(cond, ms)) guest_fail_code(GUEST_EXIT_TIMEOUT, __VA_ARGS__); \
  } while (0)

/* The multiboot command line (empty if none). Tokens are "key=value" separated by spaces. */
const char *cmdline(void);
/* Value of key=<unsigned> on the command line (decimal or 0x-hex), or `fallback`. */
uint32_t cmdline_uint(const char *key, uint32_t fallback);
bool cmdline_has(const char *key, uint32_t *out);

/* Index of the running CPU, free to compute: the slot of its stack, which is its APIC id. */
static inline unsigned this_cpu(void) {
  extern uint8_t cpu_stacks[];
  uintptr_t sp;
  __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
  return (unsigned)((sp - (uintptr_t)cpu_stacks) >> GUEST_STACK_SHIFT);
}

/* Loads the GDT and IDT on the running CPU (the BSP at boot, each AP on arrival). */
void cpu_tables_load(void);
