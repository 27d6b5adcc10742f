// A hostile guest driver's split virtqueue (devmodel/virtio/virtqueue.h): the fuzz input becomes the descriptor
// table, the available ring and the buffers in guest RAM. The device pops every chain the ring offers, reads and
// writes its buffers and returns it; chains that loop, leave guest RAM or are malformed must be refused, never
// followed, and nothing is read or written outside guest RAM.
#include <algorithm>
#include <cstring>
#include <vector>

#include "devmodel/virtio/virtqueue.h"
#include "hypervisor/memory/guest_memory.h"
#include "tests/fuzz/fuzz_target.h"

using namespace coalesce;

namespace {

constexpr uint64_t kDesc = 0x1000, kAvail = 0x3000, kUsed = 0x4000;
constexpr uint64_t kWindow = 0x10000;  // the low guest RAM the input may fill

const GuestMemory& Memory() {
  static GuestMemory* memory = [] {
    auto m = GuestMemory::Create(kMinGuestMemory);
    if (!m.ok()) std::abort();
    return new GuestMemory(std::move(*m));
  }();
  return *memory;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const GuestMemory& mem = Memory();
  std::vector<uint8_t> window(kWindow, 0);
  // Byte 0: the queue size; the rest fills the descriptor table first, then the rings and buffers after it.
  std::memcpy(window.data() + kDesc, data + 1, std::min<size_t>(size - 1, kWindow - kDesc));
  if (!mem.Write(0, window).ok()) std::abort();
  virtio::QueueConfig config{.index = 0, .size = static_cast<uint16_t>(1u << (data[0] % 9)), .desc = kDesc,
                             .driver = kAvail, .device = kUsed};
  virtio::Virtqueue queue(&mem, config);
  const std::vector<uint8_t> reply(300, 0xab);
  for (int i = 0; i < 2 * config.size + 2; ++i) {
    auto chain = queue.Pop();
    if (!chain.ok() || !chain->has_value()) break;
    const virtio::Chain& c = **chain;
    auto read = queue.ReadAll(c, 4096);
    if (read.ok()) FUZZ_CHECK(read->size() <= c.readable_bytes());
    auto written = queue.WriteAll(c, reply);
    if (written.ok()) FUZZ_CHECK(*written <= c.writable_bytes());
    if (!queue.Push(c.head, written.ok() ? *written : 0).ok()) break;
  }
  (void)queue.Publish();
  return 0;
}
