/* The PIT is the reference clock. Channel 2 (gated through port 0x61, no IRQ) counts down in mode 0 and
 * is read with the latch command, so an interval is known to within one read even when each port access
 * is slow (on an emulating host, a poll can take milliseconds: waiting for OUT2 would overshoot by that). */
#include "io.h"
#include "runtime.h"
#include "timing.h"

#define PIT_CH2_DATA 0x42
#define PIT_COMMAND 0x43
#define PIT_CMD_CH2_MODE0_LOHI 0xb0
#define PIT_CMD_CH2_LATCH 0x80
#define PORT_B 0x61
#define PORT_B_GATE2 0x01
#define PORT_B_SPEAKER 0x02
#define CHUNK_TICKS 47727u /* 40 ms: far from the 55 ms wrap of a 0xffff count */
/* Before calibration the TSC rate is unknown; 2^35 cycles is > 10 s for any TSC below 3.4 GHz. */
#define STUCK_TSC_LIMIT (1ull << 35)

static uint64_t tsc_rate;

static uint16_t pit_ch2_read(void) {
  outb(PIT_COMMAND, PIT_CMD_CH2_LATCH);
  uint8_t lo = inb(PIT_CH2_DATA);
  uint8_t hi = inb(PIT_CH2_DATA);
  return (uint16_t)(lo | (hi << 8));
}

static uint16_t pit_ch2_start(void) {
  outb(PORT_B, (inb(PORT_B) & ~PORT_B_SPEAKER) | PORT_B_GATE2);
  outb(PIT_COMMAND, PIT_CMD_CH2_MODE0_LOHI);
  outb(PIT_CH2_DATA, 0xff);
  outb(PIT_CH2_DATA, 0xff);
  return pit_ch2_read();
}

/* Runs channel 2 until at least `ticks` (<= CHUNK_TICKS) have passed; returns the ticks that did pass and
 * the TSC values taken next to the first and last counter reads. */
static uint32_t pit_chunk(uint32_t ticks, uint64_t *tsc_start, uint64_t *tsc_end) {
  uint16_t first = pit_ch2_start();
  *tsc_start = rdtsc();
  uint64_t last_change = *tsc_start;
  uint64_t limit = tsc_rate ? tsc_rate * 10 : STUCK_TSC_LIMIT;
  uint16_t prev = first;
  for (;;) {
    uint64_t now = rdtsc();
    uint16_t cur = pit_ch2_read();
    if (cur > first) /* wrapped past 0: a poll took > 15 ms; count what we know and stop */
      guest_fail_code(GUEST_EXIT_ENV, "PIT channel 2 wrapped during a %u-tick wait (poll too slow?)", ticks);
    if ((uint32_t)(first - cur) >= ticks) {
      *tsc_end = now;
      return (uint32_t)(first - cur);
    }
    if (cur != prev) {
      prev = cur;
      last_change = now;
    } else if (now - last_change > limit) {
      guest_fail_code(GUEST_EXIT_TIMEOUT, "PIT channel 2 stopped counting at %#x (port 0x42/0x43/0x61)", cur);
    }
    cpu_relax();
  }
}

uint64_t pit_wait_us(uint32_t us) {
  uint64_t want = (uint64_t)us * PIT_HZ / 1000000u, done = 0;
  while (done < want) {
    uint64_t left = want - done, t0, t1;
    done += pit_chunk(left > CHUNK_TICKS ? CHUNK_TICKS : (uint32_t)left, &t0, &t1);
  }
  return done * 1000000u / PIT_HZ;
}

uint64_t tsc_hz(void) {
  if (!tsc_rate) {
    uint64_t t0, t1;
    uint32_t ticks = pit_chunk(CHUNK_TICKS, &t0, &t1);
    uint64_t hz = (t1 - t0) * PIT_HZ / ticks;
    if (hz < 1000000) guest_fail_code(GUEST_EXIT_ENV, "TSC calibration gave %lu Hz", hz);
    tsc_rate = hz;
  }
  return tsc_rate;
}

uint64_t tsc_from_us(uint64_t us) { return us * tsc_hz() / 1000000u; }
uint64_t tsc_to_us(uint64_t cycles) { return cycles * 1000000u / tsc_hz(); }

void delay_us(uint32_t us) {
  uint64_t end = rdtsc() + tsc_from_us(us);
  while (rdtsc() < end) cpu_relax();
}
