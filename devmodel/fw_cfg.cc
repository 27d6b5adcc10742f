#include "devmodel/fw_cfg.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"

namespace coalesce {
namespace {

void AppendLe(std::vector<uint8_t>* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<uint8_t>(value >> (8 * i)));
}

void AppendBe(std::vector<uint8_t>* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out->push_back(static_cast<uint8_t>(value >> (8 * i)));
}

}  // namespace

FwCfg::FwCfg() {
  absl::MutexLock lock(&mu_);
  items_[kSignatureKey] = {'Q', 'E', 'M', 'U'};
  std::vector<uint8_t> id;
  AppendLe(&id, 1, 4);  // bit 0: traditional interface; bit 1 (DMA) clear
  items_[kIdKey] = std::move(id);
  RebuildFileDirectory();
}

void FwCfg::Read(uint64_t /*offset*/, std::span<uint8_t> data) {
  // As on QEMU, a read of either port yields data bytes; a wider read yields consecutive bytes.
  absl::MutexLock lock(&mu_);
  for (uint8_t& byte : data) byte = NextDataByte();
}

void FwCfg::Write(uint64_t offset, std::span<const uint8_t> data) {
  absl::MutexLock lock(&mu_);
  if (offset == 0 && data.size() >= 2) {
    selector_ = static_cast<uint16_t>(LoadLe(data.first(2)));
    offset_ = 0;
    return;
  }
  // Byte writes are data writes, which QEMU has ignored since 2.4; count them and log the first.
  if (ignored_writes_++ == 0) {
    LOG_WARN("fw_cfg: ignoring data write (offset %d, %d bytes, selector %#x)", offset, data.size(),
             selector_);
  }
}

uint8_t FwCfg::NextDataByte() {
  uint16_t key = selector_ & static_cast<uint16_t>(kEntryMask | kArchLocal);
  auto it = items_.find(key);
  if (it == items_.end() || offset_ >= it->second.size()) return 0;
  return it->second[offset_++];
}

void FwCfg::SetRamSize(uint64_t bytes) {
  std::vector<uint8_t> v;
  AppendLe(&v, bytes, 8);
  absl::MutexLock lock(&mu_);
  items_[kRamSizeKey] = std::move(v);
}

void FwCfg::SetCpuCount(uint16_t boot_cpus, uint16_t max_cpus) {
  std::vector<uint8_t> nb, max;
  AppendLe(&nb, boot_cpus, 2);
  AppendLe(&max, max_cpus, 2);
  absl::MutexLock lock(&mu_);
  items_[kNbCpusKey] = std::move(nb);
  items_[kMaxCpusKey] = std::move(max);
}

absl::Status FwCfg::SetItem(uint16_t key, std::vector<uint8_t> bytes) {
  if (key & kWriteChannel) return absl::InvalidArgumentError(absl::StrFormat("fw_cfg key %#x has the write bit", key));
  const uint16_t entry = key & kEntryMask;
  if (entry == kFileDirKey || (!(key & kArchLocal) && entry >= kFirstFileKey)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("fw_cfg key %#x is the file directory or a file selector: use AddFile", key));
  }
  absl::MutexLock lock(&mu_);
  items_[key] = std::move(bytes);
  return absl::OkStatus();
}

absl::StatusOr<uint16_t> FwCfg::AddFile(std::string_view name, std::vector<uint8_t> bytes) {
  if (name.empty() || name.size() > kMaxFileNameLength || name.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("fw_cfg file name must be 1-", kMaxFileNameLength, " bytes without NUL: ", std::string(name)));
  }
  if (bytes.size() > UINT32_MAX) return absl::InvalidArgumentError("fw_cfg file larger than 4 GiB");
  absl::MutexLock lock(&mu_);
  if (files_.contains(std::string(name))) {
    return absl::AlreadyExistsError(absl::StrCat("fw_cfg file exists: ", std::string(name)));
  }
  if (next_file_key_ > kEntryMask) return absl::ResourceExhaustedError("fw_cfg file selectors exhausted");
  const uint16_t key = next_file_key_++;
  files_.emplace(std::string(name), key);
  items_[key] = std::move(bytes);
  RebuildFileDirectory();
  return key;
}

absl::StatusOr<uint16_t> FwCfg::AddE820(std::span<const E820Entry> entries) {
  std::vector<uint8_t> table;
  table.reserve(entries.size() * 20);
  for (const E820Entry& e : entries) {
    AppendLe(&table, e.address, 8);
    AppendLe(&table, e.length, 8);
    AppendLe(&table, e.type, 4);
  }
  return AddFile("etc/e820", std::move(table));
}

void FwCfg::RebuildFileDirectory() {
  // struct FWCfgFiles { be32 count; struct { be32 size; be16 select; u16 reserved; char name[56]; } f[]; }
  std::vector<uint8_t> dir;
  AppendBe(&dir, files_.size(), 4);
  for (const auto& [name, key] : files_) {
    AppendBe(&dir, items_[key].size(), 4);
    AppendBe(&dir, key, 2);
    AppendBe(&dir, 0, 2);
    std::string padded = name;
    padded.resize(kMaxFileNameLength + 1, '\0');
    dir.insert(dir.end(), padded.begin(), padded.end());
  }
  items_[kFileDirKey] = std::move(dir);
}

}  // namespace coalesce
