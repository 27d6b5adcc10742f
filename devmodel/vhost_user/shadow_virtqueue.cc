#include "devmodel/vhost_user/shadow_virtqueue.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce {
namespace {

// Split virtqueue layout (virtio 1.2, 2.7) of the shadow ring.
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;

uint64_t AlignPage(uint64_t v) { return (v + platform::kPageSize - 1) & ~(platform::kPageSize - 1); }
uint64_t DescBytes(uint16_t n) { return AlignPage(16ULL * n); }
uint64_t AvailBytes(uint16_t n) { return AlignPage(6 + 2ULL * n); }

uint64_t Load(const uint8_t* p, size_t n) { return LoadLe(std::span<const uint8_t>(p, n)); }
void Store(uint8_t* p, size_t n, uint64_t v) { StoreLe(std::span<uint8_t>(p, n), v); }

}  // namespace

uint64_t ShadowVirtqueue::ShadowBytes(uint16_t size) {
  return DescBytes(size) + AvailBytes(size) + AlignPage(6 + 8ULL * size);
}

ShadowVirtqueue::ShadowVirtqueue(const GuestMemory* guest, const virtio::QueueConfig& queue, uint8_t* shadow,
                                 virtio::DmaGuard* guard)
    : guest_memory_(guest), queue_(queue), guest_(guest, queue), shadow_(shadow), guard_(guard), in_flight_(queue.size) {
  for (uint16_t i = queue.size; i > 0; --i) free_descs_.push_back(static_cast<uint16_t>(i - 1));
}

ShadowVirtqueue::~ShadowVirtqueue() { Abandon(); }

uint64_t ShadowVirtqueue::desc_addr() const { return reinterpret_cast<uint64_t>(shadow_); }
uint64_t ShadowVirtqueue::avail_addr() const { return desc_addr() + DescBytes(queue_.size); }
uint64_t ShadowVirtqueue::used_addr() const { return avail_addr() + AvailBytes(queue_.size); }
uint8_t* ShadowVirtqueue::ShadowDesc(uint16_t i) const { return shadow_ + 16ULL * i; }

size_t ShadowVirtqueue::in_flight() const {
  size_t n = 0;
  for (const InFlight& f : in_flight_) n += f.busy ? 1 : 0;
  return n;
}

namespace {
// The status byte of a virtio-blk request: the last byte of a chain ending in a device-writable buffer; 0 if none.
uint64_t StatusByte(const virtio::Chain& chain) {
  const virtio::Chain::Buffer& last = chain.buffers.back();
  return last.device_writes ? last.gpa + last.len - 1 : 0;
}
}  // namespace

absl::Status ShadowVirtqueue::CompleteAtOnce(const virtio::Chain& chain, uint8_t status) {
  const uint64_t status_gpa = StatusByte(chain);
  if (status_gpa != 0) RETURN_IF_ERROR(guest_memory_->Write(status_gpa, std::span<const uint8_t>(&status, 1)));
  return guest_.Push(chain.head, status_gpa != 0 ? 1 : 0);
}

absl::StatusOr<int> ShadowVirtqueue::ForwardAvailable(bool* completed) {
  int forwarded = 0;
  while (true) {
    // Guest chains that loop, leave guest RAM or are indirect are returned used by Pop (length 0) and skipped.
    std::optional<virtio::Chain> chain = std::move(waiting_);
    waiting_.reset();
    if (!chain) {
      ASSIGN_OR_RETURN(chain, guest_.Pop());
      if (!chain) break;
    }
    if (failed_) {
      RETURN_IF_ERROR(CompleteAtOnce(*chain, fail_status_));
      continue;
    }
    if (chain->buffers.size() > free_descs_.size()) {
      waiting_ = std::move(chain);  // the back end still holds descriptors: after its completions
      break;
    }
    InFlight f;
    f.guest_head = chain->head;
    f.status_gpa = StatusByte(*chain);
    absl::Status acquired;
    for (const virtio::Chain::Buffer& b : chain->buffers) {
      if (acquired = guard_->Acquire(b.gpa, b.len); !acquired.ok()) break;
      f.buffers.emplace_back(b.gpa, b.len);
    }
    if (!acquired.ok()) {
      // The page could not be brought home (the DSM failed): the request fails, the guest sees an I/O error.
      LOG_ERROR_SAMPLED("virtqueue %u: request %u: %s", queue_.index, chain->head, acquired.ToString());
      Release(f);
      RETURN_IF_ERROR(CompleteAtOnce(*chain, /*VIRTIO_BLK_S_IOERR*/ 1));
      continue;
    }
    const size_t n = chain->buffers.size();
    for (size_t k = 0; k < n; ++k) {
      f.shadow_descs.push_back(free_descs_.back());
      free_descs_.pop_back();
    }
    for (size_t k = 0; k < n; ++k) {
      const virtio::Chain::Buffer& b = chain->buffers[k];
      uint8_t* s = ShadowDesc(f.shadow_descs[k]);
      const bool more = k + 1 < n;
      Store(s, 8, b.gpa);
      Store(s + 8, 4, b.len);
      Store(s + 12, 2, (b.device_writes ? kDescWrite : 0) | (more ? kDescNext : 0));
      Store(s + 14, 2, more ? f.shadow_descs[k + 1] : 0);
    }
    const uint16_t shadow_head = f.shadow_descs[0];
    f.busy = true;
    in_flight_[shadow_head] = std::move(f);
    uint8_t* avail = shadow_ + DescBytes(queue_.size);
    Store(avail + 4 + 2 * (shadow_avail_idx_ % queue_.size), 2, shadow_head);
    ++shadow_avail_idx_;
    ++forwarded;
  }
  if (forwarded > 0) {
    std::atomic_thread_fence(std::memory_order_release);
    Store(shadow_ + DescBytes(queue_.size) + 2, 2, shadow_avail_idx_);
  }
  *completed = guest_.has_unpublished();  // refused, failed, or not acquired: the guest must hear of them
  RETURN_IF_ERROR(guest_.Publish());
  return forwarded;
}

absl::StatusOr<int> ShadowVirtqueue::ReturnUsed() {
  const uint8_t* used = shadow_ + DescBytes(queue_.size) + AvailBytes(queue_.size);
  const uint16_t used_idx = static_cast<uint16_t>(Load(used + 2, 2));
  std::atomic_thread_fence(std::memory_order_acquire);
  int returned = 0;
  while (shadow_last_used_ != used_idx) {
    const uint8_t* e = used + 4 + 8 * (shadow_last_used_ % queue_.size);
    const uint32_t id = static_cast<uint32_t>(Load(e, 4));
    const uint32_t len = static_cast<uint32_t>(Load(e + 4, 4));
    ++shadow_last_used_;
    if (id >= in_flight_.size() || !in_flight_[id].busy) {
      LOG_ERROR_SAMPLED("virtqueue %u: the back end used descriptor %u, which it was not given", queue_.index, id);
      continue;
    }
    InFlight& f = in_flight_[id];
    // Release before the guest can see the completion: its vCPUs may touch the buffers from any node after that.
    Release(f);
    RETURN_IF_ERROR(guest_.Push(f.guest_head, len));
    for (uint16_t d : f.shadow_descs) free_descs_.push_back(d);
    f = InFlight{};
    ++returned;
  }
  RETURN_IF_ERROR(guest_.Publish());
  return returned;
}

int ShadowVirtqueue::FailAll(uint8_t status) {
  failed_ = true;
  fail_status_ = status;
  int n = 0;
  for (InFlight& f : in_flight_) {
    if (!f.busy) continue;
    Release(f);
    if (f.status_gpa != 0) (void)guest_memory_->Write(f.status_gpa, std::span<const uint8_t>(&status, 1));
    (void)guest_.Push(f.guest_head, f.status_gpa != 0 ? 1 : 0);
    for (uint16_t d : f.shadow_descs) free_descs_.push_back(d);
    f = InFlight{};
    ++n;
  }
  (void)guest_.Publish();
  return n;
}

void ShadowVirtqueue::Abandon() {
  for (InFlight& f : in_flight_) {
    if (!f.busy) continue;
    Release(f);
    for (uint16_t d : f.shadow_descs) free_descs_.push_back(d);
    f = InFlight{};
  }
}

void ShadowVirtqueue::Release(InFlight& f) {
  for (const auto& [gpa, len] : f.buffers) guard_->Release(gpa, len);
  f.buffers.clear();
}

}  // namespace coalesce
