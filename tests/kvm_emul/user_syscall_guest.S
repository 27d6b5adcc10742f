/* A long-mode guest that drops to CPL3 and executes `syscall`, as every Linux process does for its first
 * system call. Data for user_syscall_test.cc: copied to guest-physical 0x10000 (kernel page, supervisor)
 * and 0x11000 (user page); results at 0x8000. The syscall entry (LSTAR) records CS and exits with hlt; the
 * #PF handler records the error code and the faulting frame's RIP and CS, then hlt. */
        .pushsection .rodata.user_syscall_guest, "a"
        .code64
        .globl usc_kernel_start, usc_kernel_end, usc_lstar, usc_pf, usc_user_start, usc_user_end

#define RESULT 0x8000
#define USER_CODE 0x11000

usc_kernel_start:
        mov $0x90000, %rsp
        pushq $0x1b                /* SS: user data */
        pushq $0x71000             /* RSP: in the user page range */
        pushq $0x2                 /* RFLAGS: IF off */
        pushq $0x23                /* CS: 64-bit user code */
        pushq $USER_CODE
        iretq
usc_lstar:                         /* syscall lands here, at CPL0 on a working host */
        mov %cs, %rax
        mov %rax, RESULT + 8
        mov %rcx, RESULT + 0x28    /* user RIP after the syscall */
        movq $0x5ca11, RESULT
1:      hlt
        jmp 1b
usc_pf:
        pop %rax
        mov %rax, RESULT + 0x10    /* error code */
        mov (%rsp), %rax
        mov %rax, RESULT + 0x18    /* RIP of the fault */
        mov 8(%rsp), %rax
        mov %rax, RESULT + 0x20    /* CS of the fault */
        movq $0xbad, RESULT
2:      hlt
        jmp 2b
usc_kernel_end:

usc_user_start:
        mov $42, %eax
        syscall
        ud2
usc_user_end:
        .popsection
        .section .note.GNU-stack,"",@progbits
