/* Memory layout constants shared by the assembly entry code and the C runtime. */
#pragma once

#define GUEST_MAX_CPUS 64            /* APIC ids 0..63; stacks are indexed by APIC id */
#define GUEST_STACK_SHIFT 14
#define GUEST_STACK_SIZE (1 << GUEST_STACK_SHIFT) /* 16 KiB per CPU */
#define GUEST_TRAMPOLINE_ADDR 0x8000 /* AP start-up code; SIPI vector = addr >> 12 */
#define GUEST_SEL_CODE64 0x08
#define GUEST_SEL_DATA 0x10
#define GUEST_SEL_CODE32 0x18        /* only used on the way from real/protected mode to long mode */
#define GUEST_LAPIC_BASE 0xFEE00000
#define GUEST_EFER_MSR 0xC0000080
#define GUEST_EFER_LME 0x100
#define GUEST_CR4_PAE 0x20
#define GUEST_CR0_PE_PG 0x80000001
