// A minimal virtio driver for tests: negotiates through a VirtioMmio's registers as Linux's virtio_mmio does,
// lays out one split virtqueue in guest RAM and submits descriptor chains. Guest RAM is a flat host view where
// guest physical address = offset (GuestMemory below 3 GiB, or a DSM node's copy of it). Independent of the device code:
// the register offsets and ring layouts are written out here from the virtio 1.2 specification.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <thread>
#include <vector>

#include "devmodel/virtio/virtio_mmio.h"

namespace coalesce::testing {

class VirtioTestDriver {
 public:
  static constexpr uint64_t kDesc = 0x10000, kAvail = 0x11000, kUsed = 0x12000, kBuffers = 0x20000;
  static constexpr uint16_t kQueueSize = 16;

  VirtioTestDriver(virtio::VirtioMmio* dev, uint8_t* ram) : dev_(dev), ram_(ram) {}

  void Write(uint64_t gpa, std::span<const uint8_t> b) { std::memcpy(ram_ + gpa, b.data(), b.size()); }
  void Read(uint64_t gpa, std::span<uint8_t> b) { std::memcpy(b.data(), ram_ + gpa, b.size()); }

  uint32_t Reg(uint64_t off) {
    uint8_t b[4];
    dev_->Read(off, b);
    return static_cast<uint32_t>(b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24);
  }
  void SetReg(uint64_t off, uint32_t v) {
    uint8_t b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)};
    dev_->Write(off, b);
  }
  uint64_t DeviceFeatures() {
    SetReg(0x14, 1);
    uint64_t hi = Reg(0x10);
    SetReg(0x14, 0);
    return hi << 32 | Reg(0x10);
  }
  // Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back.
  uint32_t Negotiate(uint64_t features) {
    SetReg(0x70, 0);
    SetReg(0x70, 1);
    SetReg(0x70, 3);
    SetReg(0x24, 0);
    SetReg(0x20, static_cast<uint32_t>(features));
    SetReg(0x24, 1);
    SetReg(0x20, static_cast<uint32_t>(features >> 32));
    SetReg(0x70, 3 | 8);
    return Reg(0x70);
  }
  // Queue 0 at the fixed addresses, then DRIVER_OK.
  void StartQueue0() {
    std::vector<uint8_t> zero(0x3000, 0);
    Write(kDesc, zero);
    SetReg(0x30, 0);
    SetReg(0x38, kQueueSize);
    SetReg(0x80, static_cast<uint32_t>(kDesc));
    SetReg(0x84, 0);
    SetReg(0x90, static_cast<uint32_t>(kAvail));
    SetReg(0x94, 0);
    SetReg(0xa0, static_cast<uint32_t>(kUsed));
    SetReg(0xa4, 0);
    SetReg(0x44, 1);
    SetReg(0x70, 3 | 8 | 4);
  }

  struct Buf {
    uint64_t gpa;
    uint32_t len;
    bool device_writes;
  };
  // Puts one chain in the ring (descriptors from 0), makes it available and notifies queue 0.
  void Submit(const std::vector<Buf>& chain) {
    for (size_t i = 0; i < chain.size(); ++i) {
      uint8_t d[16] = {};
      Put(d, 0, chain[i].gpa, 8);
      Put(d, 8, chain[i].len, 4);
      uint16_t flags = static_cast<uint16_t>((i + 1 < chain.size() ? 1 : 0) | (chain[i].device_writes ? 2 : 0));
      Put(d, 12, flags, 2);
      Put(d, 14, i + 1, 2);
      Write(kDesc + 16 * i, d);
    }
    uint8_t slot[2] = {0, 0};  // head = descriptor 0
    Write(kAvail + 4 + 2 * (avail_idx_ % kQueueSize), slot);
    ++avail_idx_;
    uint8_t idx[2] = {uint8_t(avail_idx_), uint8_t(avail_idx_ >> 8)};
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Write(kAvail + 2, idx);
    SetReg(0x50, 0);
  }
  uint16_t UsedIdx() {
    uint8_t b[2];
    std::atomic_thread_fence(std::memory_order_seq_cst);
    Read(kUsed + 2, b);
    return static_cast<uint16_t>(b[0] | b[1] << 8);
  }
  // Waits (up to `timeout`) for the used ring to reach avail's index.
  bool WaitUsed(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (UsedIdx() != avail_idx_) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  uint16_t avail_idx() const { return avail_idx_; }

 private:
  static void Put(uint8_t* p, size_t at, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) p[at + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  virtio::VirtioMmio* dev_;
  uint8_t* ram_;
  uint16_t avail_idx_ = 0;
};

}  // namespace coalesce::testing
