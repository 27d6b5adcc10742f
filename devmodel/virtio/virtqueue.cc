#include "devmodel/virtio/virtqueue.h"

#include <atomic>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce::virtio {
namespace {

constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;

uint64_t Load(const uint8_t* p, size_t n) { return LoadLe(std::span<const uint8_t>(p, n)); }

}  // namespace

uint64_t Chain::readable_bytes() const {
  uint64_t n = 0;
  for (const Buffer& b : buffers) n += b.device_writes ? 0 : b.len;
  return n;
}

uint64_t Chain::writable_bytes() const {
  uint64_t n = 0;
  for (const Buffer& b : buffers) n += b.device_writes ? b.len : 0;
  return n;
}

absl::StatusOr<std::vector<Chain::Buffer>> Virtqueue::ReadChain(uint16_t head) const {
  std::vector<Chain::Buffer> out;
  uint16_t i = head;
  while (true) {
    if (i >= config_.size) return absl::InvalidArgumentError(absl::StrFormat("descriptor %u of %u", i, config_.size));
    if (out.size() >= config_.size) return absl::InvalidArgumentError("descriptor chain loops");
    uint8_t raw[16];
    RETURN_IF_ERROR(memory_->Read(config_.desc + 16ULL * i, raw));
    const uint64_t addr = Load(raw, 8);
    const uint32_t len = static_cast<uint32_t>(Load(raw + 8, 4));
    const uint16_t flags = static_cast<uint16_t>(Load(raw + 12, 2));
    if (flags & kDescIndirect) return absl::InvalidArgumentError("indirect descriptor (not offered)");
    if (len == 0 || !memory_->Contains(addr, len)) {
      return absl::InvalidArgumentError(absl::StrFormat("buffer [%#x, +%u) outside guest RAM", addr, len));
    }
    out.push_back({addr, len, (flags & kDescWrite) != 0});
    if (!(flags & kDescNext)) return out;
    i = static_cast<uint16_t>(Load(raw + 14, 2));
  }
}

absl::StatusOr<std::optional<Chain>> Virtqueue::Pop() {
  while (true) {
    uint8_t idx[2];
    RETURN_IF_ERROR(memory_->Read(config_.driver + 2, idx));
    const uint16_t published = static_cast<uint16_t>(Load(idx, 2));
    if (published == last_avail_) return std::optional<Chain>();
    // A driver can never have more chains outstanding than the ring has entries (2.7.13); a larger jump is a
    // broken or hostile driver, refused here instead of walking up to 65535 stale ring entries.
    if (const uint16_t ahead = static_cast<uint16_t>(published - last_avail_); ahead > config_.size) {
      return absl::DataLossError(absl::StrFormat("virtqueue %u: the driver made %u chains available in a ring of %u",
                                                 config_.index, ahead, config_.size));
    }
    std::atomic_thread_fence(std::memory_order_acquire);  // the ring entry after the index (2.7.13)
    uint8_t slot[2];
    RETURN_IF_ERROR(memory_->Read(config_.driver + 4 + 2ULL * (last_avail_ % config_.size), slot));
    ++last_avail_;
    Chain chain;
    chain.head = static_cast<uint16_t>(Load(slot, 2));
    absl::StatusOr<std::vector<Chain::Buffer>> buffers = ReadChain(chain.head);
    if (!buffers.ok()) {
      ++refused_;
      LOG_WARN_SAMPLED("virtqueue %u: chain at %u refused: %s", config_.index, chain.head, buffers.status().message());
      RETURN_IF_ERROR(Push(chain.head, 0));
      continue;
    }
    chain.buffers = *std::move(buffers);
    return std::optional<Chain>(std::move(chain));
  }
}

absl::StatusOr<std::vector<uint8_t>> Virtqueue::ReadAll(const Chain& chain, size_t max) const {
  std::vector<uint8_t> out;
  for (const Chain::Buffer& b : chain.buffers) {
    if (b.device_writes || out.size() >= max) continue;
    const size_t take = std::min<size_t>(b.len, max - out.size());
    const size_t at = out.size();
    out.resize(at + take);
    RETURN_IF_ERROR(memory_->Read(b.gpa, std::span<uint8_t>(out.data() + at, take)));
  }
  return out;
}

absl::StatusOr<uint32_t> Virtqueue::WriteAll(const Chain& chain, std::span<const uint8_t> data) const {
  size_t done = 0;
  for (const Chain::Buffer& b : chain.buffers) {
    if (!b.device_writes || done >= data.size()) continue;
    const size_t put = std::min<size_t>(b.len, data.size() - done);
    RETURN_IF_ERROR(memory_->Write(b.gpa, data.subspan(done, put)));
    done += put;
  }
  return static_cast<uint32_t>(done);
}

absl::Status Virtqueue::Push(uint16_t head, uint32_t len) {
  uint8_t e[8];
  StoreLe(std::span<uint8_t>(e, 4), head);
  StoreLe(std::span<uint8_t>(e + 4, 4), len);
  RETURN_IF_ERROR(memory_->Write(config_.device + 4 + 8ULL * (used_idx_ % config_.size), e));
  ++used_idx_;
  used_dirty_ = true;
  return absl::OkStatus();
}

absl::Status Virtqueue::Publish() {
  if (!used_dirty_) return absl::OkStatus();
  std::atomic_thread_fence(std::memory_order_release);  // the entries before the index
  uint8_t idx[2] = {static_cast<uint8_t>(used_idx_), static_cast<uint8_t>(used_idx_ >> 8)};
  used_dirty_ = false;
  return memory_->Write(config_.device + 2, idx);
}

}  // namespace coalesce::virtio
