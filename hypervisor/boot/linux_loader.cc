#include "hypervisor/boot/linux_loader.h"

#include <asm/bootparam.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/boot/boot_layout.h"
#include "hypervisor/boot/boot_tables.h"
#include "hypervisor/boot/bzimage_header.h"
#include "hypervisor/boot/initrd_placement.h"
#include "hypervisor/boot/kernel_payload.h"
#include "hypervisor/boot/vmlinux_loader.h"

namespace coalesce {
namespace {

constexpr uint8_t kLoaderTypeUndefined = 0xff;  // boot.rst: "0xFF: undefined" for loaders without an ID
constexpr uint16_t kVidModeNormal = 0xffff;
// Real-mode heap end (offset from the setup code, minus 0x200). Nothing runs the real-mode setup with the
// 64-bit protocol, but boot.rst asks loaders that set CAN_USE_HEAP to fill it in.
constexpr uint16_t kHeapEndPtr = 0xfe00;
constexpr uint64_t kStartup64Offset = 0x200;

bool RangeIsRam(const std::vector<E820Entry>& e820, uint64_t begin, uint64_t end) {
  return std::any_of(e820.begin(), e820.end(), [&](const E820Entry& e) {
    return e.type == E820Type::kRam && e.addr <= begin && end <= e.addr + e.size;
  });
}

absl::Status CheckCmdline(const std::string& cmdline, const BzImageHeader& h) {
  if (cmdline.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("kernel command line contains a NUL byte");
  }
  const uint64_t max = std::min<uint64_t>(h.cmdline_size, boot_layout::kCmdlineMax - 1);
  if (cmdline.size() > max) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "kernel command line too long: %u bytes, this kernel accepts at most %u", cmdline.size(), max));
  }
  return absl::OkStatus();
}

// The vmlinux image when the payload is one we decompress on the host; nullopt when the kernel's own
// decompressor has to run in the guest (the caller asked for it, or the format is not one we handle).
absl::StatusOr<std::optional<std::vector<uint8_t>>> HostDecompressedKernel(std::span<const uint8_t> image,
                                                                           const BzImageHeader& h,
                                                                           const LinuxBootOptions& options) {
  if (!options.decompress_on_host) return std::nullopt;
  if (h.payload_length == 0) {
    LOG_INFO("linux: the setup header locates no compressed payload; the kernel decompresses itself");
    return std::nullopt;
  }
  ASSIGN_OR_RETURN(KernelPayload payload, ExtractKernelPayload(image));
  if (!CanDecompress(payload.compression)) {
    LOG_INFO("linux: payload compressed with %s, which Coalesce does not decompress; the kernel decompresses "
             "itself",
             PayloadCompressionName(payload.compression));
    return std::nullopt;
  }
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<uint8_t>> vmlinux =
      Decompress(payload.compression, payload.stream, payload.uncompressed_size);
  if (!vmlinux.ok()) {
    return absl::Status(vmlinux.status().code(),
                        absl::StrCat("decompressing the kernel on the host (decompress_on_host): ",
                                     std::string(vmlinux.status().message())));
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  LOG_INFO("linux: %s payload of %u bytes decompressed on the host to %u bytes in %d ms",
           PayloadCompressionName(payload.compression), payload.stream.size(), vmlinux->size(), ms);
  return std::optional<std::vector<uint8_t>>(std::move(*vmlinux));
}

absl::Status RamTooSmall(uint64_t begin, uint64_t end, const char* why) {
  return absl::ResourceExhaustedError(absl::StrFormat(
      "guest memory too small for this kernel: it needs contiguous RAM from %#x to %#x %s", begin, end, why));
}

}  // namespace

absl::StatusOr<LinuxLoadResult> LoadLinux(GuestMemory& mem, std::span<const uint8_t> image,
                                          const LinuxBootOptions& options) {
  ASSIGN_OR_RETURN(BzImageHeader h, ParseBzImageHeader(image));
  RETURN_IF_ERROR(CheckCmdline(options.cmdline, h));

  if (options.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("e820 map has %u entries, the zero page holds %u", options.e820.size(),
                        E820_MAX_ENTRIES_ZEROPAGE));
  }
  ASSIGN_OR_RETURN(std::optional<std::vector<uint8_t>> vmlinux, HostDecompressedKernel(image, h, options));

  LinuxLoadResult result;
  const uint64_t pref = h.pref_address;
  if (vmlinux) {
    // vmlinux's segments sit at its link address (pref_address for every relocatable kernel); init_size is
    // the build's own bound on what the kernel uses from there (it covers _end - _text), kept as a safe
    // margin around the ELF's span.
    result.decompressed_on_host = true;
    if (!RangeIsRam(options.e820, boot_layout::kHighLoadAddr, pref + h.init_size)) {
      return RamTooSmall(boot_layout::kHighLoadAddr, pref + h.init_size, "(pref_address + init_size)");
    }
    ASSIGN_OR_RETURN(VmlinuxLoadResult v, LoadVmlinux(mem, *vmlinux));
    result.kernel_addr = v.lowest;
    result.kernel_extent_end = std::max(pref + h.init_size, v.highest_end);
    result.entry.rip = v.entry;
    if (!RangeIsRam(options.e820, std::min(v.lowest, pref), result.kernel_extent_end)) {
      return RamTooSmall(std::min(v.lowest, pref), result.kernel_extent_end, "(vmlinux's segments)");
    }
  } else {
    // A relocatable kernel loaded at pref_address decompresses in place; anything else goes to 1 MiB and the
    // decompressor moves itself to pref_address (LOAD_PHYSICAL_ADDR). Either way it works from
    // max(load, pref_address) for init_size bytes.
    const bool use_pref = h.relocatable && pref >= boot_layout::kHighLoadAddr &&
                          RangeIsRam(options.e820, pref, pref + h.init_size);
    result.kernel_addr = use_pref ? pref : boot_layout::kHighLoadAddr;
    result.kernel_extent_end = std::max(result.kernel_addr, pref) + h.init_size;
    result.entry.rip = result.kernel_addr + kStartup64Offset;
    if (!RangeIsRam(options.e820, boot_layout::kHighLoadAddr, result.kernel_extent_end)) {
      return RamTooSmall(boot_layout::kHighLoadAddr, result.kernel_extent_end, "while decompressing");
    }
  }

  if (!options.initrd.empty()) {
    // Nothing below 1 MiB: besides our boot structures, the decompressor borrows low memory for its
    // paging trampoline, and early kernel code allocates the real-mode trampoline there.
    std::vector<AddressRange> occupied = {
        {0, boot_layout::kHighLoadAddr},
        {boot_layout::kHighLoadAddr, result.kernel_extent_end},
    };
    ASSIGN_OR_RETURN(result.initrd_addr, PlaceInitrd(options.e820, options.initrd.size(), h.initrd_addr_max,
                                                     occupied));
    result.initrd_size = options.initrd.size();
  }

  // The zero page: the file's setup header, then the fields a loader owns.
  auto bp = std::make_unique<boot_params>();
  std::memset(bp.get(), 0, sizeof(boot_params));
  const size_t header_bytes = std::min(h.header_end, offsetof(boot_params, hdr) + sizeof(setup_header)) -
                              offsetof(boot_params, hdr);
  std::memcpy(&bp->hdr, image.data() + offsetof(boot_params, hdr), header_bytes);
  bp->hdr.vid_mode = kVidModeNormal;
  bp->hdr.type_of_loader = kLoaderTypeUndefined;
  bp->hdr.loadflags = static_cast<uint8_t>(bp->hdr.loadflags | CAN_USE_HEAP);
  bp->hdr.heap_end_ptr = kHeapEndPtr;
  bp->hdr.code32_start = static_cast<uint32_t>(result.kernel_addr);
  bp->hdr.cmd_line_ptr = static_cast<uint32_t>(boot_layout::kCmdlineAddr);
  bp->ext_cmd_line_ptr = static_cast<uint32_t>(boot_layout::kCmdlineAddr >> 32);
  bp->hdr.ramdisk_image = static_cast<uint32_t>(result.initrd_addr);
  bp->ext_ramdisk_image = static_cast<uint32_t>(result.initrd_addr >> 32);
  bp->hdr.ramdisk_size = static_cast<uint32_t>(result.initrd_size);
  bp->ext_ramdisk_size = static_cast<uint32_t>(result.initrd_size >> 32);
  bp->acpi_rsdp_addr = options.acpi_rsdp_addr;
  bp->e820_entries = static_cast<uint8_t>(options.e820.size());
  for (size_t i = 0; i < options.e820.size(); ++i) {
    bp->e820_table[i].addr = options.e820[i].addr;
    bp->e820_table[i].size = options.e820[i].size;
    bp->e820_table[i].type = static_cast<uint32_t>(options.e820[i].type);
  }

  if (vmlinux) {
    // The decompressor clears KASLR_FLAG and sets it again only when it randomized the kernel's location;
    // the kernel proper reads it to decide whether to randomize its memory regions too. We did not.
    bp->hdr.loadflags = static_cast<uint8_t>(bp->hdr.loadflags & ~KASLR_FLAG);
  } else {
    RETURN_IF_ERROR(mem.Write(result.kernel_addr, image.subspan(h.kernel_offset, h.kernel_size)));
  }
  if (!options.initrd.empty()) RETURN_IF_ERROR(mem.Write(result.initrd_addr, options.initrd));
  std::vector<uint8_t> cmdline(options.cmdline.begin(), options.cmdline.end());
  cmdline.push_back('\0');
  RETURN_IF_ERROR(mem.Write(boot_layout::kCmdlineAddr, cmdline));
  RETURN_IF_ERROR(mem.Write(boot_layout::kZeroPageAddr,
                            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bp.get()), sizeof(boot_params))));
  RETURN_IF_ERROR(WriteBootGdt(mem, BootCpuMode::kLong64));
  ASSIGN_OR_RETURN(uint64_t cr3, WriteIdentityPageTables(mem));

  BootEntry& e = result.entry;
  e.mode = BootCpuMode::kLong64;
  e.rsi = boot_layout::kZeroPageAddr;
  e.rsp = boot_layout::kStackTop;
  e.gdt_base = boot_layout::kGdtAddr;
  e.gdt_limit = kBootGdtLimit;
  e.code_selector = boot_layout::kCodeSelector;
  e.data_selector = boot_layout::kDataSelector;
  e.cr3 = cr3;
  LOG_INFO("linux: protocol %d.%02d, %s at %#x (needs up to %#x), initrd %#x (%u bytes), entry %#x",
           h.version >> 8, h.version & 0xff,
           result.decompressed_on_host ? "vmlinux decompressed on the host" : "compressed kernel",
           result.kernel_addr, result.kernel_extent_end, result.initrd_addr, result.initrd_size, e.rip);
  return result;
}

}  // namespace coalesce
