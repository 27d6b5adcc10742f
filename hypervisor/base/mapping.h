// Move-only owner of an mmap()ed region.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"

namespace coalesce {

class Mapping final {
 public:
  Mapping() = default;
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  ~Mapping() { Reset(); }

  Mapping(Mapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      Reset();
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // mmap() wrapper; errors name `what`.
  static absl::StatusOr<Mapping> Map(size_t size, int prot, int flags, int fd, off_t offset,
                                     const char* what);

  [[nodiscard]] uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] bool valid() const { return addr_ != nullptr; }

 private:
  void Reset() {
    if (addr_ != nullptr) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace coalesce
