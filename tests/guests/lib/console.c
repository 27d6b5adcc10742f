/* Polled 16550 output and a small printf (d i u x X p s c %, flags 0 - #, width, l ll). */
#include "atomic.h"
#include "console.h"
#include "io.h"
#include "runtime.h"

static spinlock_t console_lock = SPINLOCK_INIT;
/* CPU holding the console lock + 1, so an exception raised while printing can still report. */
static volatile uint32_t console_owner;

void serial_init(void) {
  outb(COM1 + UART_IER, 0x00);
  outb(COM1 + UART_LCR, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01);        /* divisor 1: 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + UART_LCR, 0x03); /* 8N1 */
  outb(COM1 + UART_FCR, 0xc7); /* FIFOs on, cleared, 14-byte threshold */
  outb(COM1 + UART_MCR, 0x0b); /* DTR, RTS, OUT2 (gates the IRQ line on PCs) */
}

void serial_putc(char c) {
  /* Bounded wait: an emulated UART that never reports THRE costs output, never a hang. */
  for (uint32_t i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & UART_LSR_THRE); i++) cpu_relax();
  outb(COM1 + UART_THR, (uint8_t)c);
}

struct sink {
  char *buf; /* null: serial */
  size_t size, len;
};

static void sink_put(struct sink *s, char c) {
  if (!s->buf) serial_putc(c);
  else if (s->len + 1 < s->size) s->buf[s->len] = c;
  s->len++;
}

static void put_number(struct sink *s, uint64_t v, unsigned base, bool upper, bool negative, int width,
                       bool zero_pad, bool left) {
  char tmp[24];
  int n = 0;
  const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    tmp[n++] = digits[v % base];
    v /= base;
  } while (v);
  int len = n + (negative ? 1 : 0);
  if (negative && zero_pad) sink_put(s, '-');
  if (!left)
    for (; width > len; width--) sink_put(s, zero_pad ? '0' : ' ');
  if (negative && !zero_pad) sink_put(s, '-');
  while (n) sink_put(s, tmp[--n]);
  if (left)
    for (; width > len; width--) sink_put(s, ' ');
}

static void format(struct sink *s, const char *fmt, va_list ap) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      sink_put(s, *fmt);
      continue;
    }
    fmt++;
    bool zero_pad = false, left = false, alt = false;
    for (;; fmt++) {
      if (*fmt == '0') zero_pad = true;
      else if (*fmt == '-') left = true;
      else if (*fmt == '#') alt = true;
      else break;
    }
    int width = 0;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int longs = 0;
    while (*fmt == 'l') {
      longs++;
      fmt++;
    }
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = longs >= 2 ? va_arg(ap, long long) : (longs ? va_arg(ap, long) : va_arg(ap, int));
        put_number(s, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, false, v < 0, width, zero_pad, left);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        uint64_t v = longs >= 2 ? va_arg(ap, unsigned long long)
                                : (longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned));
        if (alt && *fmt != 'u') {
          sink_put(s, '0');
          sink_put(s, 'x');
        }
        put_number(s, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, zero_pad, left);
        break;
      }
      case 'p':
        sink_put(s, '0');
        sink_put(s, 'x');
        put_number(s, (uintptr_t)va_arg(ap, void *), 16, false, false, 16, true, false);
        break;
      case 's': {
        const char *str = va_arg(ap, const char *);
        if (!str) str = "(null)";
        int len = (int)strlen(str);
        if (!left)
          for (; width > len; width--) sink_put(s, ' ');
        while (*str) sink_put(s, *str++);
        if (left)
          for (; width > len; width--) sink_put(s, ' ');
        break;
      }
      case 'c':
        sink_put(s, (char)va_arg(ap, int));
        break;
      case '%':
        sink_put(s, '%');
        break;
      case 0:
        return;
      default:
        sink_put(s, '%');
        sink_put(s, *fmt);
        break;
    }
  }
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap) {
  struct sink s = {buf, size, 0};
  format(&s, fmt, ap);
  if (size) buf[s.len < size ? s.len : size - 1] = 0;
  return (int)s.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return n;
}

int vprintf(const char *fmt, va_list ap) {
  uint64_t flags = irq_save(); /* a handler printing on this CPU must not spin on our own lock */
  uint32_t me = this_cpu() + 1;
  bool nested = console_owner == me;
  if (!nested) {
    spin_lock(&console_lock);
    console_owner = me;
  }
  struct sink s = {0, 0, 0};
  format(&s, fmt, ap);
  if (!nested) {
    console_owner = 0;
    spin_unlock(&console_lock);
  }
  irq_restore(flags);
  return (int)s.len;
}

int printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vprintf(fmt, ap);
  va_end(ap);
  return n;
}
