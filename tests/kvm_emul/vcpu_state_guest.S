/* A long-mode guest whose result depends on every kind of state a vCPU carries: general registers (a
 * rotating accumulator and a counter), the stack, an SSE register mixed each round, and an MSR it reads at the
 * end (KERNEL_GS_BASE, set by the test). Each round ends with `out` to port 0x80: an exit where the test may
 * stop the vCPU, capture its state and continue it in another VM (vcpu_state_test.cc). Copied to
 * guest-physical 0x10000; results at 0x8000; hlt when done. */
        .pushsection .rodata.vcpu_state_guest, "a"
        .code64
        .globl vs_start, vs_end

#define RESULT 0x8000
#define ROUNDS 600

vs_start:
        mov $0x90000, %rsp
        xor %eax, %eax
        xor %ebx, %ebx
        movabs $0x0123456789abcdef, %rdx
        movq %rdx, %xmm1
        pxor %xmm0, %xmm0
        mov $ROUNDS, %r12d
1:      inc %rbx
        mov %rbx, %rdx
        imul %rbx, %rdx
        add %rdx, %rax
        rol $7, %rax
        paddq %xmm1, %xmm0
        pshufd $0x4e, %xmm0, %xmm0
        push %rax
        pop %r13
        out %al, $0x80
        cmp %r12, %rbx
        jne 1b
        mov %r13, RESULT
        movdqu %xmm0, RESULT + 8
        mov $0xc0000102, %ecx
        rdmsr
        mov %eax, RESULT + 0x18
        mov %edx, RESULT + 0x1c
        mov %rbx, RESULT + 0x20
2:      hlt
        jmp 2b
vs_end:
        .popsection
        .section .note.GNU-stack,"",@progbits
