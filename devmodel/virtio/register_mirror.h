// A page that holds a device's registers as the guest would read them, so that KVM can serve the guest's reads
// from memory (a read-only memslot over the register window) instead of exiting to user space for each one.
// Only for registers whose reads have no side effects, as every virtio-mmio register. Writes to the window
// still exit (a read-only memslot turns them into MMIO exits), and the device stores each value that changes.
// Every store is of aligned 32-bit words, so a guest reading while a store happens sees the old or the new
// word, never a mix.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace coalesce::virtio {

class RegisterMirror final {
 public:
  static constexpr size_t kSize = 4096;  // one page: a memslot's unit

  RegisterMirror();
  RegisterMirror(const RegisterMirror&) = delete;
  RegisterMirror& operator=(const RegisterMirror&) = delete;

  // `offset` is 4-byte aligned and below kSize (else ignored).
  void Store32(uint64_t offset, uint32_t value);
  // Bytes from a 4-byte aligned `offset`, little-endian into whole words; a last partial word is zero-padded.
  void StoreBytes(uint64_t offset, std::span<const uint8_t> bytes);
  [[nodiscard]] uint32_t Load32(uint64_t offset) const;
  // kSize bytes, page-aligned: what the memslot maps. Lives as long as this object.
  [[nodiscard]] void* page() const { return page_.get(); }

 private:
  struct alignas(kSize) Page {
    std::atomic<uint32_t> words[kSize / 4];
  };
  static_assert(sizeof(Page) == kSize && std::atomic<uint32_t>::is_always_lock_free);
  std::unique_ptr<Page> page_;
};

}  // namespace coalesce::virtio
