// QEMU's firmware configuration device (fw_cfg), traditional port-I/O interface only (no DMA): a guest
// writes a 16-bit item selector to port 0x510 and reads the item's bytes, one per access, from 0x511.
// Firmware and boot code written for QEMU (SeaBIOS-style loaders, test guests) find the machine's RAM
// size, CPU count, e820 map and named files here. Facts follow QEMU's docs/specs/fw_cfg.txt.
//
// Items are set while the machine is built; the guest-visible cursor (selector + offset) is shared by
// all vCPUs, as on QEMU, so guests serialize their own use.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/bus/bus_device.h"

namespace coalesce {

class FwCfg final : public BusDevice {
 public:
  // Registered at platform::kFwCfgPort: offset 0 is the selector (16-bit write), offset 1 the data byte.
  static constexpr uint64_t kSize = 2;

  // Well-known selectors.
  static constexpr uint16_t kSignatureKey = 0x0000;
  static constexpr uint16_t kIdKey = 0x0001;
  static constexpr uint16_t kRamSizeKey = 0x0003;
  static constexpr uint16_t kNbCpusKey = 0x0005;
  static constexpr uint16_t kMaxCpusKey = 0x000f;
  static constexpr uint16_t kFileDirKey = 0x0019;
  static constexpr uint16_t kFirstFileKey = 0x0020;
  static constexpr uint16_t kEntryMask = 0x3fff;   // low bits name the item
  static constexpr uint16_t kWriteChannel = 0x4000;  // ignored: items are read-only here
  static constexpr uint16_t kArchLocal = 0x8000;   // x86-specific items keep this bit
  static constexpr size_t kMaxFileNameLength = 55;  // 56 bytes with the NUL

  // One e820 entry as QEMU's "etc/e820" file holds it: 20 bytes, little-endian, packed.
  struct E820Entry {
    uint64_t address;
    uint64_t length;
    uint32_t type;  // 1 RAM, 2 reserved, 3 ACPI, 4 NVS
  };

  // Installs the signature ("QEMU") and the ID item (traditional interface only).
  FwCfg();

  void Read(uint64_t offset, std::span<uint8_t> data) override;
  void Write(uint64_t offset, std::span<const uint8_t> data) override;
  [[nodiscard]] std::string_view name() const override { return "fw_cfg"; }

  void SetRamSize(uint64_t bytes);
  void SetCpuCount(uint16_t boot_cpus, uint16_t max_cpus);
  // Sets a numbered item. The file directory and file selectors are managed by AddFile: rejected here.
  absl::Status SetItem(uint16_t key, std::vector<uint8_t> bytes);
  // Adds a named file (name at most 55 bytes, unique) and returns its selector.
  absl::StatusOr<uint16_t> AddFile(std::string_view name, std::vector<uint8_t> bytes);
  // Adds (or fails if present) the "etc/e820" file from `entries`.
  absl::StatusOr<uint16_t> AddE820(std::span<const E820Entry> entries);

 private:
  // Next data byte of the selected item, 0 past its end or for an absent item.
  uint8_t NextDataByte() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rebuilds item 0x0019 from files_ (sorted by name, as QEMU lists them).
  void RebuildFileDirectory() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<uint16_t, std::vector<uint8_t>> items_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint16_t> files_ ABSL_GUARDED_BY(mu_);  // name -> selector
  uint16_t next_file_key_ ABSL_GUARDED_BY(mu_) = kFirstFileKey;
  uint16_t selector_ ABSL_GUARDED_BY(mu_) = kSignatureKey;
  size_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ignored_writes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace coalesce
