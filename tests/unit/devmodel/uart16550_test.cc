#include "devmodel/uart16550.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "hypervisor/base/platform.h"
#include "tests/unit/devmodel/recording_irq_sink.h"

namespace coalesce {
namespace {

constexpr uint64_t kThr = 0, kIer = 1, kIir = 2, kFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint32_t kIrq = platform::kCom1Irq;

struct Fixture {
  RecordingIrqSink sink;
  std::vector<uint8_t> out;
  Uart16550 uart{&sink, kIrq, [this](uint8_t b) { out.push_back(b); }};
};

TEST_CASE("uart: reset state and scratch register") {
  Fixture f;
  CHECK(Inb(f.uart, kIir) == 0x01);  // no interrupt, FIFOs off
  CHECK((Inb(f.uart, kLsr) & 0x60) == 0x60);  // THRE and TEMT
  CHECK((Inb(f.uart, kLsr) & 0x01) == 0);
  Outb(f.uart, kScr, 0xa5);
  CHECK(Inb(f.uart, kScr) == 0xa5);
  Outb(f.uart, kIer, 0xff);
  CHECK(Inb(f.uart, kIer) == 0x0f);  // only the four enable bits exist
}

TEST_CASE("uart: divisor latch shadows THR and IER while DLAB is set") {
  Fixture f;
  Outb(f.uart, kLcr, 0x83);  // DLAB, 8N1
  Outb(f.uart, kThr, 0x01);  // DLL: 115200 baud
  Outb(f.uart, kIer, 0x00);  // DLM
  CHECK(Inb(f.uart, kThr) == 0x01);
  CHECK(Inb(f.uart, kIer) == 0x00);
  CHECK(f.out.empty());  // a DLL write is not a transmit
  Outb(f.uart, kLcr, 0x03);
  CHECK(Inb(f.uart, kLcr) == 0x03);
  CHECK(Inb(f.uart, kIer) == 0x00);  // IER, untouched by the DLM write
  for (char c : std::string("hi\n")) Outb(f.uart, kThr, static_cast<uint8_t>(c));
  CHECK(f.out == std::vector<uint8_t>{'h', 'i', '\n'});
  Outb(f.uart, kLcr, 0x83);
  CHECK(Inb(f.uart, kThr) == 0x01);  // the divisor survived
}

TEST_CASE("uart: loopback returns transmitted bytes and mirrors MCR in MSR") {
  Fixture f;
  Outb(f.uart, kMcr, 0x10 | 0x0a);  // loop, RTS, OUT2: what Linux's 8250 probe writes
  CHECK((Inb(f.uart, kMsr) & 0xf0) == 0x90);  // CTS and DCD
  Outb(f.uart, kThr, 'x');
  CHECK(f.out.empty());
  CHECK((Inb(f.uart, kLsr) & 0x01) == 0x01);
  CHECK(Inb(f.uart, kThr) == 'x');
  CHECK((Inb(f.uart, kLsr) & 0x01) == 0);
  Outb(f.uart, kMcr, 0x00);
  CHECK((Inb(f.uart, kMsr) & 0xf0) == 0xb0);  // host side: DCD, DSR, CTS
  Outb(f.uart, kThr, 'y');
  CHECK(f.out == std::vector<uint8_t>{'y'});
}

TEST_CASE("uart: THR-empty interrupt follows IER and IIR reads, gated by OUT2") {
  Fixture f;
  Outb(f.uart, kIer, 0x02);
  CHECK(Inb(f.uart, kIir) == 0x02);  // pending as soon as it is enabled (Linux's THRE test)...
  CHECK_FALSE(f.sink.level(kIrq));   // ...but OUT2 is off, so the line stays low
  CHECK(Inb(f.uart, kIir) == 0x01);  // the IIR read acknowledged it
  Outb(f.uart, kMcr, 0x08);          // OUT2
  Outb(f.uart, kIer, 0x00);
  Outb(f.uart, kIer, 0x02);
  CHECK(f.sink.level(kIrq));
  CHECK(Inb(f.uart, kIir) == 0x02);
  CHECK_FALSE(f.sink.level(kIrq));
  Outb(f.uart, kThr, 'a');  // THR empties at once: a new THRE event
  CHECK(f.sink.level(kIrq));
  Outb(f.uart, kIer, 0x00);
  CHECK_FALSE(f.sink.level(kIrq));
  CHECK(f.sink.rising_edges(kIrq) == 2);
}

TEST_CASE("uart: received data raises the interrupt until the guest drains it") {
  Fixture f;
  Outb(f.uart, kMcr, 0x08);
  Outb(f.uart, kIer, 0x01);
  CHECK_FALSE(f.sink.level(kIrq));
  const uint8_t bytes[] = {'o', 'k'};
  f.uart.ReceiveBytes(bytes);
  CHECK(f.sink.level(kIrq));
  CHECK(Inb(f.uart, kIir) == 0x04);
  CHECK(Inb(f.uart, kThr) == 'o');
  CHECK(f.sink.level(kIrq));
  CHECK(Inb(f.uart, kThr) == 'k');
  CHECK_FALSE(f.sink.level(kIrq));
  CHECK(Inb(f.uart, kIir) == 0x01);
  CHECK((Inb(f.uart, kLsr) & 0x01) == 0);
}

TEST_CASE("uart: FIFO trigger level and character timeout in IIR") {
  Fixture f;
  Outb(f.uart, kFcr, 0x47);  // enable, clear both, trigger at 4
  Outb(f.uart, kIer, 0x01);
  CHECK((Inb(f.uart, kIir) & 0xc0) == 0xc0);
  const uint8_t two[] = {1, 2};
  f.uart.ReceiveBytes(two);
  CHECK(Inb(f.uart, kIir) == 0xcc);  // below the trigger: timeout indication
  f.uart.ReceiveBytes(two);
  CHECK(Inb(f.uart, kIir) == 0xc4);  // at the trigger: data available
  Outb(f.uart, kFcr, 0x00);
  CHECK(Inb(f.uart, kIir) == 0x01);  // FIFO off clears it and the FIFO bits
}

TEST_CASE("uart: loopback FIFO overflow sets the overrun bit and keeps 16 bytes") {
  Fixture f;
  Outb(f.uart, kFcr, 0x07);
  Outb(f.uart, kMcr, 0x10);
  for (int i = 0; i < 17; ++i) Outb(f.uart, kThr, static_cast<uint8_t>(i));
  const uint8_t lsr = Inb(f.uart, kLsr);
  CHECK((lsr & 0x02) == 0x02);
  CHECK((Inb(f.uart, kLsr) & 0x02) == 0);  // reading LSR cleared OE
  for (int i = 0; i < 16; ++i) CHECK(Inb(f.uart, kThr) == i);
  CHECK((Inb(f.uart, kLsr) & 0x01) == 0);
}

TEST_CASE("uart: host input beyond the queue overruns and raises a line status interrupt") {
  Fixture f;
  Outb(f.uart, kMcr, 0x08);
  Outb(f.uart, kIer, 0x05);  // RX data and line status
  std::vector<uint8_t> big(Uart16550::kHostQueueCapacity + 100, 'z');
  f.uart.ReceiveBytes(big);
  CHECK(f.uart.dropped_input_bytes() == 100);
  CHECK(f.sink.level(kIrq));
  CHECK(Inb(f.uart, kIir) == 0x06);  // line status outranks data
  CHECK((Inb(f.uart, kLsr) & 0x03) == 0x03);
  CHECK(Inb(f.uart, kIir) == 0x04);
  size_t drained = 0;
  while (Inb(f.uart, kLsr) & 0x01) {
    Inb(f.uart, kThr);
    ++drained;
  }
  CHECK(drained == Uart16550::kHostQueueCapacity);
  CHECK_FALSE(f.sink.level(kIrq));
}

TEST_CASE("uart: modem status interrupt from loopback MCR changes") {
  Fixture f;
  Outb(f.uart, kMcr, 0x10);
  Inb(f.uart, kMsr);  // clear deltas from entering loopback
  Outb(f.uart, kIer, 0x08);
  CHECK(Inb(f.uart, kIir) == 0x01);
  Outb(f.uart, kMcr, 0x11);  // DTR -> DSR changes
  CHECK(Inb(f.uart, kIir) == 0x00);
  CHECK(Inb(f.uart, kMsr) == 0x22);  // DSR with its delta
  CHECK(Inb(f.uart, kIir) == 0x01);
}

TEST_CASE("uart: garbage offsets and widths do not crash") {
  Fixture f;
  uint8_t buf[8] = {};
  f.uart.Read(6, buf);  // runs past the 8 ports
  CHECK(buf[2] == 0xff);
  f.uart.Write(7, buf);
  f.uart.Write(100, buf);
}

}  // namespace
}  // namespace coalesce
