/* Multiboot v1 header, the BSP's way from 32-bit protected mode to long mode, the identity-mapped page
 * tables, the GDT and the 256 interrupt stubs.
 *
 * Why long mode: on hosts whose KVM emulates guest-kernel code (PVM here), KVM's instruction emulator
 * cannot execute a protected-mode iret, so a 32-bit guest could never return from an interrupt; iretq in
 * long mode works there, and long mode is what Linux runs in anyway. */
#include "layout.h"

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000000 /* ELF image: no a.out kludge; no memory map or alignment requests */

  .section .multiboot, "a"
  .align 4
  .long MB_MAGIC
  .long MB_FLAGS
  .long -(MB_MAGIC + MB_FLAGS)

  .text
  .code32
  .global _start
_start:
  /* Loader state: 32-bit protected mode, flat segments, paging off, EAX = magic, EBX = multiboot info. */
  cli
  cld
  movl %eax, %ebp
  movl %ebx, %esi
  /* Zero .bss ourselves (the per-CPU stacks live outside it: nothing there needs zeroing). */
  movl $__bss_start, %edi
  movl $__bss_end, %ecx
  subl %edi, %ecx
  xorl %eax, %eax
  rep stosb
  lgdt gdt64_boot_desc
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
  ljmp $GUEST_SEL_CODE64, $bsp_long_mode

  .code64
bsp_long_mode:
  movw $GUEST_SEL_DATA, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %fs
  movw %ax, %gs
  movw %ax, %ss
  /* BSP = APIC id 0 = stack slot 0 (this_cpu() derives the CPU from the stack slot). */
  movq $(cpu_stacks + GUEST_STACK_SIZE), %rsp
  movl %ebp, %edi /* magic */
  movl %esi, %esi /* multiboot info, zero-extended */
  call rt_bsp_entry
1:
  cli
  hlt
  jmp 1b

/* One 16-byte stub per vector: push a dummy error code where the CPU pushes none, push the vector, go to
 * isr_common. The IDT is filled from isr_stubs + 16 * vector. */
  .altmacro
  .macro isr_stub n
  .balign 16
  .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
  .else
  pushq $0
  .endif
  pushq $\n
  jmp isr_common
  .endm

  .balign 16
  .global isr_stubs
isr_stubs:
  .set vec, 0
  .rept 256
  isr_stub %vec
  .set vec, vec + 1
  .endr

/* Saves the general registers (struct irq_frame), calls isr_dispatch(frame). The CPU aligned RSP to 16
 * before its 5-qword frame; with the 2 stub qwords and 15 registers RSP is 16-aligned at the call. */
isr_common:
  pushq %rax
  pushq %rcx
  pushq %rdx
  pushq %rbx
  pushq %rbp
  pushq %rsi
  pushq %rdi
  pushq %r8
  pushq %r9
  pushq %r10
  pushq %r11
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  cld
  movq %rsp, %rdi
  call isr_dispatch
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %r11
  popq %r10
  popq %r9
  popq %r8
  popq %rdi
  popq %rsi
  popq %rbp
  popq %rbx
  popq %rdx
  popq %rcx
  popq %rax
  addq $16, %rsp /* vector and error code */
  iretq

  .data
  .balign 16
  .global gdt64
gdt64:
  .quad 0
  .quad 0x00AF9A000000FFFF /* GUEST_SEL_CODE64: long-mode code */
  .quad 0x00CF92000000FFFF /* GUEST_SEL_DATA: flat data, 4 GiB */
  .quad 0x00CF9A000000FFFF /* GUEST_SEL_CODE32: flat 32-bit code */
  .global gdt64_end
gdt64_end:
gdt64_boot_desc: /* 32-bit form for the lgdt before long mode */
  .word gdt64_end - gdt64 - 1
  .long gdt64

/* Identity map of the low 4 GiB with 2 MiB pages (RAM, the IOAPIC and the LAPIC included), built at
 * assembly time so the (possibly emulated) boot path does no table writes. */
  .balign 4096
  .global guest_pml4
guest_pml4:
  .quad guest_pdpt + 0x3 /* present, writable */
  .fill 511, 8, 0
guest_pdpt:
  .quad guest_pd + 0x0003, guest_pd + 0x1003, guest_pd + 0x2003, guest_pd + 0x3003
  .fill 508, 8, 0
guest_pd:
  .set page, 0
  .rept 2048
  .quad (page << 21) | 0x83 /* present, writable, 2 MiB */
  .set page, page + 1
  .endr
