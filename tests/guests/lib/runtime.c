/* BSP boot path, GDT/IDT, interrupt dispatch, exits and the command line. */
#include "guest.h"
#include "layout.h"

#define MULTIBOOT_LOADER_MAGIC 0x2BADB002u
#define MULTIBOOT_INFO_CMDLINE (1u << 2)

struct multiboot_info {
  uint32_t flags;
  uint32_t mem_lower, mem_upper;
  uint32_t boot_device;
  uint32_t cmdline;
};

uint8_t cpu_stacks[GUEST_MAX_CPUS * GUEST_STACK_SIZE]
    __attribute__((aligned(GUEST_STACK_SIZE), section(".bss.stacks")));

extern const uint64_t gdt64[], gdt64_end[]; /* entry.S */

struct idt_gate {
  uint16_t offset_low, selector;
  uint8_t ist, type_attr;
  uint16_t offset_mid;
  uint32_t offset_high, reserved;
} __attribute__((packed));

struct table_desc {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(16)));
static volatile irq_handler_fn handlers[256];
static char cmdline_buf[1024];

extern const uint8_t isr_stubs[];

static void idt_build(void) {
  for (unsigned v = 0; v < 256; v++) {
    uint64_t addr = (uint64_t)(uintptr_t)(isr_stubs + 16 * v);
    idt[v].offset_low = addr & 0xffff;
    idt[v].offset_mid = (addr >> 16) & 0xffff;
    idt[v].offset_high = (uint32_t)(addr >> 32);
    idt[v].selector = GUEST_SEL_CODE64;
    idt[v].ist = 0;
    idt[v].type_attr = 0x8e; /* present, DPL 0, 64-bit interrupt gate: IF cleared on entry */
    idt[v].reserved = 0;
  }
}

void cpu_tables_load(void) {
  struct table_desc g = {(uint16_t)((uintptr_t)gdt64_end - (uintptr_t)gdt64 - 1), (uint64_t)(uintptr_t)gdt64};
  struct table_desc i = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
  /* CS is reloaded with a far return: long mode has no direct far jump to an immediate selector. */
  __asm__ volatile(
      "lgdt %0\n\t"
      "pushq %1\n\t"
      "leaq 1f(%%rip), %%rax\n\t"
      "pushq %%rax\n\t"
      "lretq\n"
      "1:\n\t"
      "movw %w2, %%ax\n\t"
      "movw %%ax, %%ds\n\t"
      "movw %%ax, %%es\n\t"
      "movw %%ax, %%fs\n\t"
      "movw %%ax, %%gs\n\t"
      "movw %%ax, %%ss\n\t"
      "lidt %3"
      :
      : "m"(g), "i"(GUEST_SEL_CODE64), "i"(GUEST_SEL_DATA), "m"(i)
      : "rax", "memory");
}

void irq_set_handler(uint8_t vector, irq_handler_fn fn) {
  handlers[vector] = fn;
  compiler_barrier();
}

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check",
    "#XM SIMD error", "#VE virtualization", "#CP control protection",
};

static void ignore_interrupt(struct irq_frame *f) { (void)f; }

static void lapic_error_interrupt(struct irq_frame *f) {
  (void)f;
  lapic_write(LAPIC_ESR, 0); /* latch */
  uint32_t esr = lapic_read(LAPIC_ESR);
  guest_fail_code(GUEST_EXIT_EXCEPTION, "LAPIC error interrupt on CPU %u, ESR=%#x", this_cpu(), esr);
}

void isr_dispatch(struct irq_frame *f) {
  irq_handler_fn fn = handlers[f->vector & 0xff];
  if (fn) {
    fn(f);
    return;
  }
  if (f->vector < 32) {
    const char *name = exception_names[f->vector] ? exception_names[f->vector] : "reserved";
    uint64_t cr2;
    __asm__ volatile("movq %%cr2, %0" : "=r"(cr2));
    guest_fail_code(GUEST_EXIT_EXCEPTION,
                    "unexpected exception %u (%s) on CPU %u: error=%#lx rip=%#lx rflags=%#lx cr2=%#lx rax=%#lx",
                    (unsigned)f->vector, name, this_cpu(), f->error_code, f->rip, f->rflags, cr2, f->rax);
  }
  guest_fail_code(GUEST_EXIT_EXCEPTION, "unexpected interrupt vector %#x on CPU %u (rip=%#lx)",
                  (unsigned)f->vector, this_cpu(), f->rip);
}

NORETURN void guest_exit(uint8_t code) {
  outb(DEBUG_EXIT_PORT, code);
  /* No isa-debug-exit device: stop here; the runner's timeout reports it. */
  for (;;) {
    irq_disable();
    halt();
  }
}

NORETURN void guest_pass(void) {
  printf("%s: PASS\n", guest_name);
  guest_exit(GUEST_EXIT_PASS);
}

NORETURN void guest_fail_code(uint8_t code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("%s: FAIL (exit code %u): %s\n", guest_name, code, msg);
  guest_exit(code);
}

const char *cmdline(void) { return cmdline_buf; }

static bool parse_uint(const char *s, uint32_t *out) {
  uint32_t base = 10, v = 0;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s += 2;
  }
  if (*s == 0 || *s == ' ') return false;
  for (; *s && *s != ' '; s++) {
    uint32_t d;
    if (*s >= '0' && *s <= '9') d = (uint32_t)(*s - '0');
    else if (base == 16 && *s >= 'a' && *s <= 'f') d = (uint32_t)(*s - 'a' + 10);
    else if (base == 16 && *s >= 'A' && *s <= 'F') d = (uint32_t)(*s - 'A' + 10);
    else return false;
    v = v * base + d;
  }
  *out = v;
  return true;
}

bool cmdline_has(const char *key, uint32_t *out) {
  size_t klen = strlen(key);
  for (const char *p = cmdline_buf; *p;) {
    while (*p == ' ') p++;
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') return parse_uint(p + klen + 1, out);
    while (*p && *p != ' ') p++;
  }
  return false;
}

uint32_t cmdline_uint(const char *key, uint32_t fallback) {
  uint32_t v;
  return cmdline_has(key, &v) ? v : fallback;
}

uint32_t delivery_timeout_ms(void) {
  uint32_t s = cmdline_uint("delivery_timeout_s", 10);
  return (s == 0 || s > 3600 ? 10 : s) * 1000;
}

void rt_bsp_entry(uint32_t magic, const struct multiboot_info *mbi);
void rt_bsp_entry(uint32_t magic, const struct multiboot_info *mbi) {
  idt_build();
  cpu_tables_load();
  serial_init();
  if (magic != MULTIBOOT_LOADER_MAGIC)
    guest_fail_code(GUEST_EXIT_ENV, "bad multiboot magic %#x in EAX (want %#x)", magic, MULTIBOOT_LOADER_MAGIC);
  /* Copy the command line before anything (the AP trampoline copy) can overwrite low memory. */
  if ((mbi->flags & MULTIBOOT_INFO_CMDLINE) && mbi->cmdline) {
    const char *src = (const char *)(uintptr_t)mbi->cmdline;
    size_t n = 0;
    while (src[n] && n < sizeof cmdline_buf - 1) {
      cmdline_buf[n] = src[n];
      n++;
    }
    cmdline_buf[n] = 0;
  }
  irq_set_handler(VECTOR_SPURIOUS, ignore_interrupt);
  irq_set_handler(PIC_VECTOR_BASE + 7, ignore_interrupt);  /* 8259 spurious IRQ 7 */
  irq_set_handler(PIC_VECTOR_BASE + 15, ignore_interrupt); /* 8259 spurious IRQ 15 */
  irq_set_handler(VECTOR_LAPIC_ERROR, lapic_error_interrupt);
  pic_remap_and_mask();
  guest_main();
  guest_fail("guest_main returned without a verdict");
}
