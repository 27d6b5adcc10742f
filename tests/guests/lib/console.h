/* Serial console (16550 on COM1, polled) and a minimal printf. */
#pragma once

#include "types.h"

#define COM1 0x3f8
#define UART_THR 0 /* transmit holding (write) */
#define UART_IER 1
#define UART_IIR 2 /* interrupt identification (read) */
#define UART_FCR 2 /* FIFO control (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_IER_THRE 0x02
#define UART_IIR_NO_INT 0x01
#define UART_IIR_ID_MASK 0x0e
#define UART_IIR_THRE 0x02
#define UART_LSR_THRE 0x20

void serial_init(void);
void serial_putc(char c);
/* Whole-line output: printf holds the console lock for the entire call, so lines from CPUs never interleave. */
int printf(const char *fmt, ...) PRINTF_LIKE(1, 2);
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
