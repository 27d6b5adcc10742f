# Reference harness for integer_test.cc: each case is a host function that loads the 16 GPRs (RSP excepted)
# and the arithmetic flags from a struct { u64 gpr[16]; u64 rflags; }, executes one instruction directly, and
# stores them back. The test decodes the bytes between <name>_insn and <name>_end and runs them through the
# emulator, so both sides execute exactly what the assembler produced.
        .intel_syntax noprefix

        .macro NCASE name, insn:vararg
        .text
        .globl \name
        .type \name, @function
\name:
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        push rdi
        push qword ptr [rdi + 128]
        popfq
        mov rax, [rdi + 0]
        mov rcx, [rdi + 8]
        mov rdx, [rdi + 16]
        mov rbx, [rdi + 24]
        mov rbp, [rdi + 40]
        mov rsi, [rdi + 48]
        mov r8, [rdi + 64]
        mov r9, [rdi + 72]
        mov r10, [rdi + 80]
        mov r11, [rdi + 88]
        mov r12, [rdi + 96]
        mov r13, [rdi + 104]
        mov r14, [rdi + 112]
        mov r15, [rdi + 120]
        mov rdi, [rdi + 56]
        .globl \name\()_insn
\name\()_insn:
        \insn
        .globl \name\()_end
\name\()_end:
        pushfq
        xchg rdi, [rsp + 8]
        mov [rdi + 0], rax
        mov [rdi + 8], rcx
        mov [rdi + 16], rdx
        mov [rdi + 24], rbx
        mov [rdi + 40], rbp
        mov [rdi + 48], rsi
        mov [rdi + 64], r8
        mov [rdi + 72], r9
        mov [rdi + 80], r10
        mov [rdi + 88], r11
        mov [rdi + 96], r12
        mov [rdi + 104], r13
        mov [rdi + 112], r14
        mov [rdi + 120], r15
        pop qword ptr [rdi + 128]
        pop qword ptr [rdi + 56]
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        ret
        .size \name, . - \name
        .endm

#define CASE(name, ...) NCASE name, __VA_ARGS__
#include "integer_cases.inc"

        .section .note.GNU-stack, "", @progbits
