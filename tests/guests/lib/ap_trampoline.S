/* AP start-up code. Copied to GUEST_TRAMPOLINE_ADDR before the SIPIs; an AP starts here in real mode at
 * CS = vector << 8, IP = 0, goes to 32-bit protected mode, then long mode on the BSP's page tables, and
 * calls rt_ap_entry on the stack of its APIC id. Everything here is position independent relative to the
 * copy: 16-bit references are offsets from the start, far jumps use the copy's absolute addresses, and
 * the jump into the kernel goes through a register. */
#include "layout.h"

#define REL(x) ((x) - ap_trampoline_start)
#define ABS(x) (GUEST_TRAMPOLINE_ADDR + REL(x))

  .text
  .global ap_trampoline_start, ap_trampoline_end
  .code16
ap_trampoline_start:
  cli
  cld
  movw %cs, %ax
  movw %ax, %ds
  lgdtl REL(tramp_gdt_desc)
  movl %cr0, %eax
  orl $1, %eax /* PE */
  movl %eax, %cr0
  ljmpl $GUEST_SEL_CODE32, $ABS(tramp_protected)

  .code32
tramp_protected:
  movw $GUEST_SEL_DATA, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %ss
  movl %cr4, %eax
  orl $GUEST_CR4_PAE, %eax
  movl %eax, %cr4
  movl $guest_pml4, %eax
  movl %eax, %cr3
  movl $GUEST_EFER_MSR, %ecx
  rdmsr
  orl $GUEST_EFER_LME, %eax
  wrmsr
  movl %cr0, %eax
  orl $GUEST_CR0_PE_PG, %eax
  movl %eax, %cr0
  ljmp $GUEST_SEL_CODE64, $ABS(tramp_long)

  .code64
tramp_long:
  movw $GUEST_SEL_DATA, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %fs
  movw %ax, %gs
  movw %ax, %ss
  /* Stack slot = own APIC id: no shared counter to race on, and this_cpu() stays free. */
  movl $GUEST_LAPIC_BASE, %eax
  movl 0x20(%rax), %eax
  shrl $24, %eax
  cmpl $GUEST_MAX_CPUS, %eax
  jae tramp_dead
  incl %eax
  shll $GUEST_STACK_SHIFT, %eax
  leaq cpu_stacks(%rax), %rsp
  movq $rt_ap_entry, %rax
  call *%rax
tramp_dead:
  cli
  hlt
  jmp tramp_dead

  .balign 8
tramp_gdt:
  .quad 0
  .quad 0x00AF9A000000FFFF /* GUEST_SEL_CODE64 */
  .quad 0x00CF92000000FFFF /* GUEST_SEL_DATA */
  .quad 0x00CF9A000000FFFF /* GUEST_SEL_CODE32 */
tramp_gdt_desc:
  .word tramp_gdt_desc - tramp_gdt - 1
  .long ABS(tramp_gdt)
ap_trampoline_end:
