/* A tiny 64-bit guest that executes the instructions PVM's emulator fails on, each right after a trapping
 * instruction (mov cr3 / cli) so that PVM is in its batch-emulation path. It is data for the host test:
 * assembled into .rodata, copied to guest-physical kGuestCode and run identity-mapped.
 * Results go to fixed addresses (see emul_kvm_test.cc); exception stubs record every exception and skip
 * the faulting instruction by %r15 bytes (set before each instruction expected to fault). */
        .pushsection .rodata.emul_guest, "a"
        .code64
        .globl emul_guest_start, emul_guest_end, emul_guest_isr_table, emul_guest_after_int3
        .globl emul_guest_ud2, emul_guest_pf, emul_guest_wp

#define EXC_COUNT   0x8000
#define EXC_LOG     0x8008
#define RESULTS     0x8400
#define CAS16_A     0x9000
#define CAS16_B     0x9010
#define CAS8_A      0x9020
#define CAS8_B      0x9030
#define XMM_SRC     0x9100
#define XCR0_COPY   0x9200  /* the XCR0 the host set, for the guest to test */
#define XSAVE_EXT   0x9208  /* CPUID.(0Dh,1).EAX of the host: bit 0 xsaveopt, bit 1 xsavec */
#define XSAVE_AREA  0xa000
#define FXSAVE_AREA 0xb000
#define XSAVEC_AREA 0xc000
#define ABSENT_PAGE 0x1f0000
#define RO_PAGE     0x1f1000

#define TRAP_INTO_EMULATION  mov %cr3, %rax; mov %rax, %cr3; cli
/* PVM's emulator also fails on SSE instructions (pxor, movdqu) inside a batch, and a port exit does not end
 * the batch: the pxor/movdqu below are completed in user space as well. */

emul_guest_start:
        mov $0x80000, %rsp
        xor %r15, %r15

        /* int3: PVM reported it as an emulation failure; the #BP handler must see RIP after it. */
        TRAP_INTO_EMULATION
        int3
emul_guest_after_int3:

        /* lock cmpxchg16b, success then failure. Memory was preset by the host. */
        TRAP_INTO_EMULATION
        mov $CAS16_A, %rdi
        movabs $0x1111222233334444, %rax
        movabs $0x5555666677778888, %rdx
        movabs $0x9999aaaabbbbcccc, %rbx
        movabs $0xddddeeeeffff0000, %rcx
        lock cmpxchg16b (%rdi)
        pushfq
        popq RESULTS + 0x00
        TRAP_INTO_EMULATION
        mov $CAS16_B, %rdi
        movabs $0x1111222233334444, %rax
        movabs $0x5555666677778888, %rdx
        lock cmpxchg16b (%rdi)
        pushfq
        popq RESULTS + 0x08
        mov %rax, RESULTS + 0x10
        mov %rdx, RESULTS + 0x18

        /* lock cmpxchg8b, success then failure (the failure zero-extends into RAX/RDX). */
        TRAP_INTO_EMULATION
        mov $CAS8_A, %rdi
        mov $0x33334444, %eax
        mov $0x77778888, %edx
        mov $0xbbbbcccc, %ebx
        mov $0xffff0000, %ecx
        lock cmpxchg8b (%rdi)
        pushfq
        popq RESULTS + 0x20
        TRAP_INTO_EMULATION
        mov $CAS8_B, %rdi
        movabs $0xffffffff33334444, %rax
        movabs $0xffffffff77778888, %rdx
        lock cmpxchg8b (%rdi)
        pushfq
        popq RESULTS + 0x28
        mov %rax, RESULTS + 0x30
        mov %rdx, RESULTS + 0x38

        /* xsave64 / xrstor64 round trip of XMM0 through a clobber. */
        movdqu XMM_SRC, %xmm0
        mov $-1, %eax
        mov $-1, %edx
        TRAP_INTO_EMULATION
        mov $-1, %eax
        xsave64 XSAVE_AREA
        pxor %xmm0, %xmm0
        TRAP_INTO_EMULATION
        mov $-1, %eax
        xrstor64 XSAVE_AREA
        movdqu %xmm0, RESULTS + 0x40

        /* fxsave64 / fxrstor64 round trip of XMM1. */
        movdqu XMM_SRC + 0x10, %xmm1
        TRAP_INTO_EMULATION
        fxsave64 FXSAVE_AREA
        pxor %xmm1, %xmm1
        TRAP_INTO_EMULATION
        fxrstor64 FXSAVE_AREA
        movdqu %xmm1, RESULTS + 0x50

        /* xsaveopt64, then xsavec64 / compacted xrstor64 round trip of XMM2; where the CPU has neither (QEMU's
           TCG under nested KVM), XMM2 is stored directly and the test says so. */
        movdqu XMM_SRC + 0x20, %xmm2
        cmpq $3, XSAVE_EXT
        jne 1f
        TRAP_INTO_EMULATION
        mov $-1, %eax
        mov $-1, %edx
        xsaveopt64 XSAVE_AREA
        TRAP_INTO_EMULATION
        mov $-1, %eax
        xsavec64 XSAVEC_AREA
        pxor %xmm2, %xmm2
        TRAP_INTO_EMULATION
        mov $-1, %eax
        xrstor64 XSAVEC_AREA
1:
        movdqu %xmm2, RESULTS + 0x60

        /* ud2: #UD at the instruction; the handler skips 2 bytes. */
        mov $2, %r15
        TRAP_INTO_EMULATION
emul_guest_ud2:
        ud2

        /* lock cmpxchg16b on an absent page: #PF, CR2 = the address, error code W. */
        mov $ABSENT_PAGE + 0x10, %rdi
        mov $5, %r15
        TRAP_INTO_EMULATION
emul_guest_pf:
        lock cmpxchg16b (%rdi)

        /* ... and on a read-only page: #PF with P|W, memory unchanged. */
        mov $RO_PAGE + 0x20, %rdi
        mov $5, %r15
        TRAP_INTO_EMULATION
emul_guest_wp:
        lock cmpxchg16b (%rdi)

        /* Integer instructions PVM's emulator lacks (popcnt, lzcnt, tzcnt) and a locked read-modify-write on
         * memory: completed natively by the integer path. */
        TRAP_INTO_EMULATION
        movabs $0xff00ff00ff00ff00, %rdi
        popcnt %rdi, %rax
        mov %rax, RESULTS + 0x78
        TRAP_INTO_EMULATION
        mov $0x00010000, %edi
        lzcnt %edi, %ecx
        tzcnt %edi, %edx
        mov %ecx, RESULTS + 0x80
        mov %edx, RESULTS + 0x84
        movq $10, RESULTS + 0x88
        TRAP_INTO_EMULATION
        mov $5, %eax
        lock xadd %rax, RESULTS + 0x88
        mov %rax, RESULTS + 0x90

        /* AVX (when XCR0 enables it; the host test checks): VEX instructions, with a plain integer one in
         * the middle, the way vectorized kernel code looks. PVM fails on every one of them. */
        testq $4, XCR0_COPY
        jz 2f
        TRAP_INTO_EMULATION
        vmovdqu XMM_SRC, %xmm0
        vpaddd %xmm0, %xmm0, %xmm1
        mov $7, %ecx
        vpxor %xmm1, %xmm0, %xmm2
        vpshufd $0x1b, %xmm2, %xmm3
        vmovd %xmm3, %eax
        add %ecx, %eax
        vmovdqu %xmm3, RESULTS + 0xa0
        mov %eax, RESULTS + 0xb0
2:
        movq $0x600d, RESULTS + 0x70
1:      hlt
        jmp 1b

/* Exception stubs, 16 bytes apart: push a dummy error code where the CPU pushes none, then the vector. */
        .balign 16
emul_guest_isr_table:
        .set vec, 0
        .rept 32
        .balign 16
        .if (vec == 8) || (vec >= 10 && vec <= 14) || (vec == 17)
        pushq $vec
        .else
        pushq $0
        pushq $vec
        .endif
        jmp exception_common
        .set vec, vec + 1
        .endr

/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. Logs (vector, error, RIP, CR2) and resumes. */
exception_common:
        push %rax
        push %rbx
        mov EXC_COUNT, %rax
        mov %rax, %rbx
        shl $5, %rbx
        add $EXC_LOG, %rbx
        inc %rax
        mov %rax, EXC_COUNT
        mov 16(%rsp), %rax
        mov %rax, (%rbx)
        mov 24(%rsp), %rax
        mov %rax, 8(%rbx)
        mov 32(%rsp), %rax
        mov %rax, 16(%rbx)
        mov %cr2, %rax
        mov %rax, 24(%rbx)
        cmpq $3, 16(%rsp)
        je 2f
        add %r15, 32(%rsp)      /* a fault: skip the instruction */
2:      pop %rbx
        pop %rax
        add $16, %rsp
        iretq
emul_guest_end:
        .popsection
        .section .note.GNU-stack, "", @progbits
