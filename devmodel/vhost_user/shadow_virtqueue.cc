#include "devmodel/vhost_user/shadow_virtqueue.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

// Split virtqueue layout (virtio 1.2, 2.7).
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint64_t kPage = 4096;

uint64_t AlignPage(uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }
uint64_t DescBytes(uint16_t n) { return AlignPage(16ULL * n); }
uint64_t AvailBytes(uint16_t n) { return AlignPage(6 + 2ULL * n); }

uint16_t Load16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t Load32(const uint8_t* p) { return static_cast<uint32_t>(Load16(p) | static_cast<uint32_t>(Load16(p + 2)) << 16); }
uint64_t Load64(const uint8_t* p) { return Load32(p) | static_cast<uint64_t>(Load32(p + 4)) << 32; }
void Store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void Store32(uint8_t* p, uint32_t v) {
  Store16(p, static_cast<uint16_t>(v));
  Store16(p + 2, static_cast<uint16_t>(v >> 16));
}
void Store64(uint8_t* p, uint64_t v) {
  Store32(p, static_cast<uint32_t>(v));
  Store32(p + 4, static_cast<uint32_t>(v >> 32));
}

}  // namespace

uint64_t ShadowVirtqueue::ShadowBytes(uint16_t size) {
  return DescBytes(size) + AvailBytes(size) + AlignPage(6 + 8ULL * size);
}

ShadowVirtqueue::ShadowVirtqueue(const GuestMemory* guest, const virtio::QueueConfig& queue, uint8_t* shadow,
                                 virtio::DmaGuard* guard)
    : guest_(guest), queue_(queue), shadow_(shadow), guard_(guard), in_flight_(queue.size) {
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

absl::StatusOr<uint16_t> ShadowVirtqueue::GuestU16(uint64_t gpa) const {
  uint8_t b[2];
  RETURN_IF_ERROR(guest_->Read(gpa, b));
  return Load16(b);
}

absl::StatusOr<std::vector<ShadowVirtqueue::GuestDesc>> ShadowVirtqueue::ReadChain(uint16_t head) const {
  std::vector<GuestDesc> chain;
  uint16_t i = head;
  while (true) {
    if (i >= queue_.size) return absl::InvalidArgumentError(absl::StrFormat("descriptor %u of %u", i, queue_.size));
    if (chain.size() >= queue_.size) return absl::InvalidArgumentError("descriptor chain loops");
    uint8_t raw[16];
    RETURN_IF_ERROR(guest_->Read(queue_.desc + 16ULL * i, raw));
    GuestDesc d{Load64(raw), Load32(raw + 8), Load16(raw + 12), Load16(raw + 14)};
    if (d.flags & kDescIndirect) return absl::InvalidArgumentError("indirect descriptor (not offered)");
    if (d.len == 0 || !guest_->Contains(d.addr, d.len)) {
      return absl::InvalidArgumentError(absl::StrFormat("buffer [%#x, +%u) outside guest RAM", d.addr, d.len));
    }
    chain.push_back(d);
    if (!(d.flags & kDescNext)) return chain;
    i = d.next;
  }
}

absl::Status ShadowVirtqueue::PutGuestUsed(uint16_t head, uint32_t len) {
  uint8_t e[8];
  Store32(e, head);
  Store32(e + 4, len);
  RETURN_IF_ERROR(guest_->Write(queue_.device + 4 + 8ULL * (guest_used_idx_ % queue_.size), e));
  ++guest_used_idx_;
  return absl::OkStatus();
}

absl::Status ShadowVirtqueue::PublishGuestUsed() {
  // The entries before the index (virtio 2.7.8: the driver reads idx, then the entries).
  std::atomic_thread_fence(std::memory_order_release);
  uint8_t idx[2];
  Store16(idx, guest_used_idx_);
  return guest_->Write(queue_.device + 2, idx);
}

absl::StatusOr<int> ShadowVirtqueue::ForwardAvailable(bool* completed) {
  *completed = false;
  ASSIGN_OR_RETURN(uint16_t avail_idx, GuestU16(queue_.driver + 2));
  std::atomic_thread_fence(std::memory_order_acquire);
  int forwarded = 0;
  while (guest_last_avail_ != avail_idx) {
    ASSIGN_OR_RETURN(uint16_t head, GuestU16(queue_.driver + 4 + 2ULL * (guest_last_avail_ % queue_.size)));
    absl::StatusOr<std::vector<GuestDesc>> chain = ReadChain(head);
    if (!chain.ok()) {
      ++refused_;
      LOG_WARN("virtqueue %u: chain at %u refused: %s", queue_.index, head, chain.status().message());
      RETURN_IF_ERROR(PutGuestUsed(head, 0));
      *completed = true;
      ++guest_last_avail_;
      continue;
    }
    uint64_t status_gpa = 0;
    if (chain->back().flags & kDescWrite) status_gpa = chain->back().addr + chain->back().len - 1;
    if (failed_) {
      if (status_gpa != 0) RETURN_IF_ERROR(guest_->Write(status_gpa, std::span<const uint8_t>(&fail_status_, 1)));
      RETURN_IF_ERROR(PutGuestUsed(head, status_gpa != 0 ? 1 : 0));
      *completed = true;
      ++guest_last_avail_;
      continue;
    }
    if (chain->size() > free_descs_.size()) break;  // the back end still holds descriptors: after its completions
    InFlight f;
    f.guest_head = head;
    f.status_gpa = status_gpa;
    absl::Status acquired;
    for (const GuestDesc& d : *chain) {
      if (acquired = guard_->Acquire(d.addr, d.len); !acquired.ok()) break;
      f.buffers.emplace_back(d.addr, d.len);
    }
    if (!acquired.ok()) {
      // The page could not be brought home (the DSM failed): the request fails, the guest sees an I/O error.
      LOG_ERROR("virtqueue %u: request %u: %s", queue_.index, head, acquired.ToString());
      Release(f);
      const uint8_t ioerr = 1;
      if (status_gpa != 0) RETURN_IF_ERROR(guest_->Write(status_gpa, std::span<const uint8_t>(&ioerr, 1)));
      RETURN_IF_ERROR(PutGuestUsed(head, status_gpa != 0 ? 1 : 0));
      *completed = true;
      ++guest_last_avail_;
      continue;
    }
    for (size_t k = 0; k < chain->size(); ++k) {
      f.shadow_descs.push_back(free_descs_.back());
      free_descs_.pop_back();
    }
    for (size_t k = 0; k < chain->size(); ++k) {
      const GuestDesc& d = (*chain)[k];
      uint8_t* s = ShadowDesc(f.shadow_descs[k]);
      const bool more = k + 1 < chain->size();
      Store64(s, d.addr);
      Store32(s + 8, d.len);
      Store16(s + 12, static_cast<uint16_t>((d.flags & kDescWrite) | (more ? kDescNext : 0)));
      Store16(s + 14, more ? f.shadow_descs[k + 1] : 0);
    }
    const uint16_t shadow_head = f.shadow_descs[0];
    f.busy = true;
    in_flight_[shadow_head] = std::move(f);
    uint8_t* avail = shadow_ + DescBytes(queue_.size);
    Store16(avail + 4 + 2 * (shadow_avail_idx_ % queue_.size), shadow_head);
    ++shadow_avail_idx_;
    ++guest_last_avail_;
    ++forwarded;
  }
  if (forwarded > 0) {
    std::atomic_thread_fence(std::memory_order_release);
    Store16(shadow_ + DescBytes(queue_.size) + 2, shadow_avail_idx_);
  }
  if (*completed) RETURN_IF_ERROR(PublishGuestUsed());
  return forwarded;
}

absl::StatusOr<int> ShadowVirtqueue::ReturnUsed() {
  const uint8_t* used = shadow_ + DescBytes(queue_.size) + AvailBytes(queue_.size);
  const uint16_t used_idx = Load16(used + 2);
  std::atomic_thread_fence(std::memory_order_acquire);
  int returned = 0;
  while (shadow_last_used_ != used_idx) {
    const uint8_t* e = used + 4 + 8 * (shadow_last_used_ % queue_.size);
    const uint32_t id = Load32(e);
    const uint32_t len = Load32(e + 4);
    ++shadow_last_used_;
    if (id >= in_flight_.size() || !in_flight_[id].busy) {
      LOG_ERROR("virtqueue %u: the back end used descriptor %u, which it was not given", queue_.index, id);
      continue;
    }
    InFlight& f = in_flight_[id];
    // Release before the guest can see the completion: its vCPUs may touch the buffers from any node after that.
    Release(f);
    RETURN_IF_ERROR(PutGuestUsed(f.guest_head, len));
    for (uint16_t d : f.shadow_descs) free_descs_.push_back(d);
    f = InFlight{};
    ++returned;
  }
  if (returned > 0) RETURN_IF_ERROR(PublishGuestUsed());
  return returned;
}

int ShadowVirtqueue::FailAll(uint8_t status) {
  failed_ = true;
  fail_status_ = status;
  int n = 0;
  for (InFlight& f : in_flight_) {
    if (!f.busy) continue;
    Release(f);
    if (f.status_gpa != 0) (void)guest_->Write(f.status_gpa, std::span<const uint8_t>(&status, 1));
    (void)PutGuestUsed(f.guest_head, f.status_gpa != 0 ? 1 : 0);
    for (uint16_t d : f.shadow_descs) free_descs_.push_back(d);
    f = InFlight{};
    ++n;
  }
  if (n > 0) (void)PublishGuestUsed();
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
