#include "hypervisor/emul/xsave_semantics.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/emul/memory_operand.h"

namespace coalesce {
namespace {

// Legacy-region layout (FXSAVE format). Offsets into the 512-byte legacy region.
constexpr uint32_t kFcwOffset = 0;
constexpr uint32_t kFipOffset = 8;
constexpr uint32_t kFdpOffset = 16;
constexpr uint32_t kMxcsrOffset = 24;
constexpr uint32_t kStOffset = 32;   // ST0..ST7 / MM0..MM7, 16 bytes each
constexpr uint32_t kXmmOffset = 160;  // XMM0..XMM15, 16 bytes each
constexpr uint32_t kXmmSize = 256;
constexpr uint32_t kLegacyWrittenEnd = 416;
constexpr uint8_t kFswEs = 0x80;  // FSW.ES (exception summary), low byte of FSW  // bytes 416..511 are never written by the processor

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void Store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
void Store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

uint64_t Xinuse(const ExtendedState& st) { return Load64(st.image.data() + kXsaveHeaderOffset); }

// One contiguous run of bytes an instruction stores, relative to the start of the save area.
struct Chunk {
  uint32_t offset;
  std::vector<uint8_t> data;
};

// x87 state in the image's 64-bit form -> the two runs the processor stores (bytes 0..23 and 32..159),
// converted to the 32-bit pointer format (FIP/FDP 32 bits, FCS/FDS as 0) without REX.W.
void AppendX87Chunks(const XsaveLayout& layout, const ExtendedState& st, bool in_use, bool rex_w,
                     std::vector<Chunk>& out) {
  std::vector<uint8_t> head(24, 0), regs(128, 0);
  if (in_use) {
    std::copy_n(st.image.begin(), 24, head.begin());
    std::copy_n(st.image.begin() + kStOffset, 128, regs.begin());
    if (layout.amd_x87_error_state && !(head[2] & kFswEs)) std::fill(head.begin() + 6, head.end(), 0);
    if (!rex_w) {
      // 32-bit format: FIP[31:0], FCS, reserved, FDP[31:0], FDS, reserved. 64-bit mode keeps no selectors.
      std::fill(head.begin() + 12, head.begin() + 16, 0);
      std::fill(head.begin() + 20, head.begin() + 24, 0);
    }
  } else {
    head[0] = 0x7f;  // FCW = 0x037f, everything else 0 (abridged FTW 0 = all empty)
    head[1] = 0x03;
  }
  out.push_back({kFcwOffset, std::move(head)});
  out.push_back({kStOffset, std::move(regs)});
}

void AppendMxcsrChunk(const ExtendedState& st, std::vector<Chunk>& out) {
  out.push_back({kMxcsrOffset, std::vector<uint8_t>(st.image.begin() + kMxcsrOffset,
                                                    st.image.begin() + kMxcsrOffset + 8)});
}

void AppendXmmChunk(const ExtendedState& st, bool in_use, std::vector<Chunk>& out) {
  std::vector<uint8_t> data(kXmmSize, 0);
  if (in_use) std::copy_n(st.image.begin() + kXmmOffset, kXmmSize, data.begin());
  out.push_back({kXmmOffset, std::move(data)});
}

absl::StatusOr<std::vector<uint8_t>> ComponentFromImage(const XsaveLayout& layout, const ExtendedState& st,
                                                        int i, bool in_use) {
  const XsaveComponent& c = layout.components[i];
  std::vector<uint8_t> data(c.size, 0);
  if (!in_use) return data;
  if (c.supervisor || c.standard_offset + c.size > st.image.size()) {
    return absl::UnimplementedError(
        absl::StrFormat("XSAVE state component %d is not available in the vCPU's state image", i));
  }
  std::copy_n(st.image.begin() + c.standard_offset, c.size, data.begin());
  return data;
}

// Stores `chunks` into the guest area at `base` after checking that all of [base, base+extent) is writable,
// so a fault leaves memory untouched.
absl::StatusOr<std::optional<Fault>> StoreChunks(GuestCpu& cpu, uint64_t base, const std::vector<Chunk>& chunks,
                                                 bool user) {
  uint32_t extent = 0;
  for (const Chunk& c : chunks) extent = std::max<uint32_t>(extent, c.offset + static_cast<uint32_t>(c.data.size()));
  const MemoryAccess access{.write = true, .user = user};
  ASSIGN_OR_RETURN(std::optional<Fault> probe, cpu.Probe(base, extent, access));
  if (probe) return probe;
  for (const Chunk& c : chunks) {
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Write(base + c.offset, c.data, access));
    if (f) return f;  // cannot happen after a successful probe unless another vCPU changed the page tables
  }
  return std::optional<Fault>();
}

// Faults every XSAVE-family and FXSAVE-family instruction checks before touching memory.
std::optional<Fault> CheckPreconditions(const Instruction& insn, const RegisterState& regs, bool xsave_family,
                                        uint64_t alignment, uint64_t linear) {
  if (insn.lock) return Fault::InvalidOpcode();
  if (xsave_family && !(regs.cr4 & kCr4Osxsave)) return Fault::InvalidOpcode();
  if (!xsave_family && (regs.cr0 & kCr0Em)) return Fault::InvalidOpcode();
  if (regs.cr0 & kCr0Ts) return Fault::DeviceNotAvailable();
  if ((linear & (alignment - 1)) != 0) return Fault::GeneralProtection(0);
  return std::nullopt;
}

// Loads the x87 part of a legacy region (`src`, 160 bytes from offset 0) into the image.
void LoadX87(const XsaveLayout& layout, const uint8_t* src, bool rex_w, ExtendedState& st) {
  uint8_t* img = st.image.data();
  std::copy_n(src, 8, img);  // FCW FSW FTW reserved FOP
  img[5] = 0;
  img[7] &= 0x07;  // FOP is 11 bits
  if (rex_w) {
    std::copy_n(src + kFipOffset, 16, img + kFipOffset);
  } else {
    Store64(img + kFipOffset, Load32(src + kFipOffset));
    Store64(img + kFdpOffset, Load32(src + kFdpOffset));
  }
  if (layout.amd_x87_error_state) {
    const bool pending = (img[2] & ~img[0] & 0x3f) != 0;  // unmasked exception flags
    img[2] = static_cast<uint8_t>((img[2] & ~kFswEs) | (pending ? kFswEs : 0));
    img[3] = static_cast<uint8_t>((img[3] & 0x7f) | (pending ? 0x80 : 0));  // FSW.B mirrors ES
    if (!pending) std::fill_n(img + 6, 18, 0);
  }
  for (int r = 0; r < 8; ++r) {
    std::copy_n(src + kStOffset + 16 * r, 10, img + kStOffset + 16 * r);  // 80-bit registers
    std::fill_n(img + kStOffset + 16 * r + 10, 6, 0);
  }
}

void InitX87(ExtendedState& st) {
  std::fill_n(st.image.begin(), 24, 0);
  st.image[0] = 0x7f;
  st.image[1] = 0x03;
  std::fill_n(st.image.begin() + kStOffset, 128, 0);
}

void SetXinuse(ExtendedState& st, uint64_t mask, uint64_t bits) {
  uint8_t* p = st.image.data() + kXsaveHeaderOffset;
  Store64(p, (Load64(p) & ~mask) | (bits & mask));
}

}  // namespace

absl::StatusOr<Completion> ExecuteFxsaveFxrstor(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs) {
  const LinearAddress la = ComputeLinearAddress(regs, insn, kXsaveLegacySize);
  if (auto f = CheckPreconditions(insn, regs, false, 16, la.address)) return Completion::Faulted(*f);
  if (la.fault) return Completion::Faulted(*la.fault);
  const bool user = regs.cpl == 3;
  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  const uint64_t xinuse = Xinuse(st);

  if (insn.mnemonic == Mnemonic::kFxsave) {
    std::vector<Chunk> chunks;
    AppendX87Chunks(cpu.xsave_layout(), st, xinuse & 1, insn.rex_w(), chunks);
    AppendMxcsrChunk(st, chunks);
    AppendXmmChunk(st, xinuse & 2, chunks);
    ASSIGN_OR_RETURN(std::optional<Fault> f, StoreChunks(cpu, la.address, chunks, user));
    return f ? Completion::Faulted(*f) : Completion::Retired();
  }

  // fxrstor
  std::vector<uint8_t> area(kLegacyWrittenEnd);
  ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(la.address, area, {.write = false, .user = user}));
  if (f) return Completion::Faulted(*f);
  const uint32_t mxcsr = Load32(area.data() + kMxcsrOffset);
  if (mxcsr & ~cpu.xsave_layout().mxcsr_mask) return Completion::Faulted(Fault::GeneralProtection(0));
  LoadX87(cpu.xsave_layout(), area.data(), insn.rex_w(), st);
  Store32(st.image.data() + kMxcsrOffset, mxcsr);
  std::copy_n(area.begin() + kXmmOffset, kXmmSize, st.image.begin() + kXmmOffset);
  SetXinuse(st, 0x3, 0x3);
  RETURN_IF_ERROR(cpu.SetExtendedState(st));
  return Completion::Retired();
}

absl::StatusOr<Completion> ExecuteXsaveFamily(GuestCpu& cpu, const Instruction& insn, const RegisterState& regs) {
  const XsaveLayout& layout = cpu.xsave_layout();
  const Mnemonic m = insn.mnemonic;
  const bool supervisor_form = m == Mnemonic::kXsaves || m == Mnemonic::kXrstors;
  const bool restore = m == Mnemonic::kXrstor || m == Mnemonic::kXrstors;
  const LinearAddress la = ComputeLinearAddress(regs, insn, kXsaveExtendedStart);
  if ((m == Mnemonic::kXsaveopt && !layout.has_xsaveopt) || (m == Mnemonic::kXsavec && !layout.has_xsavec) ||
      (supervisor_form && !layout.has_xsaves)) {
    return Completion::Faulted(Fault::InvalidOpcode());
  }
  if (auto f = CheckPreconditions(insn, regs, true, 64, la.address)) return Completion::Faulted(*f);
  if (supervisor_form && regs.cpl != 0) return Completion::Faulted(Fault::GeneralProtection(0));
  if (la.fault) return Completion::Faulted(*la.fault);

  ASSIGN_OR_RETURN(ExtendedState st, cpu.GetExtendedState());
  const uint64_t enabled = st.xcr0 | (supervisor_form ? st.xss : 0);
  const uint64_t edx_eax = (regs.gpr[2] << 32) | (regs.gpr[0] & 0xffffffffull);
  const uint64_t rfbm = edx_eax & enabled;
  uint64_t xinuse = Xinuse(st);
  const bool user = regs.cpl == 3;
  const bool rex_w = insn.rex_w();
  if (st.image.size() < layout.StandardSize(st.xcr0)) {
    return absl::InternalError("extended state image is smaller than XCR0 requires");
  }

  if (!restore) {
    const bool compacted = m == Mnemonic::kXsavec || m == Mnemonic::kXsaves;
    // XSAVEOPT/XSAVEC/XSAVES use the init optimization: components in their initial configuration are not
    // stored (their XSTATE_BV bit says so). XSAVEOPT's modified optimization is optional and not modelled.
    const bool init_optimized = m != Mnemonic::kXsave;
    // The compacted XRSTOR resets MXCSR when XSTATE_BV[1] = 0, so the compacted saves count SSE state as in
    // use whenever MXCSR differs from its default, whatever XINUSE[1] says.
    if (compacted && Load32(st.image.data() + kMxcsrOffset) != kMxcsrDefault) xinuse |= 2;
    const uint64_t stored = init_optimized ? (rfbm & xinuse) : rfbm;
    std::vector<Chunk> chunks;
    if (stored & 1) AppendX87Chunks(layout, st, xinuse & 1, rex_w, chunks);
    // The standard form stores MXCSR with either SSE or AVX requested; the compacted form only with SSE state.
    const bool mxcsr = compacted ? (stored & 2) != 0 : (rfbm & 6) != 0;
    if (mxcsr) AppendMxcsrChunk(st, chunks);
    if (stored & 2) AppendXmmChunk(st, xinuse & 2, chunks);
    for (int i = 2; i < 63; ++i) {
      if (!(stored >> i & 1)) continue;
      ASSIGN_OR_RETURN(std::vector<uint8_t> data, ComponentFromImage(layout, st, i, xinuse >> i & 1));
      const uint32_t offset = compacted ? layout.CompactedOffset(rfbm, i) : layout.components[i].standard_offset;
      chunks.push_back({offset, std::move(data)});
    }
    std::vector<uint8_t> header(compacted ? 16 : 8);
    if (compacted) {
      Store64(header.data(), xinuse & rfbm);
      Store64(header.data() + 8, rfbm | kXcompBvCompacted);
    } else {
      // XSTATE_BV bits outside RFBM keep their value in memory.
      uint8_t old[8];
      ASSIGN_OR_RETURN(std::optional<Fault> f,
                       cpu.Read(la.address + kXsaveHeaderOffset, old, {.write = true, .user = user}));
      if (f) return Completion::Faulted(*f);
      Store64(header.data(), (Load64(old) & ~rfbm) | (xinuse & rfbm));
    }
    chunks.push_back({kXsaveHeaderOffset, std::move(header)});
    ASSIGN_OR_RETURN(std::optional<Fault> f, StoreChunks(cpu, la.address, chunks, user));
    return f ? Completion::Faulted(*f) : Completion::Retired();
  }

  // xrstor / xrstors
  const MemoryAccess read{.write = false, .user = user};
  uint8_t header[kXsaveHeaderSize];
  ASSIGN_OR_RETURN(std::optional<Fault> hf, cpu.Read(la.address + kXsaveHeaderOffset, header, read));
  if (hf) return Completion::Faulted(*hf);
  const uint64_t xstate_bv = Load64(header);
  const uint64_t xcomp_bv = Load64(header + 8);
  const bool compacted = (xcomp_bv & kXcompBvCompacted) != 0;
  auto nonzero = [&](size_t from, size_t to) {
    return std::any_of(header + from, header + to, [](uint8_t b) { return b != 0; });
  };
  if (compacted) {
    if (!layout.has_xsavec || (xcomp_bv & ~kXcompBvCompacted & ~enabled) != 0 ||
        (xstate_bv & ~xcomp_bv) != 0 || nonzero(16, 64)) {
      return Completion::Faulted(Fault::GeneralProtection(0));
    }
  } else if (supervisor_form || (xstate_bv & ~st.xcr0) != 0 || nonzero(8, 24)) {
    return Completion::Faulted(Fault::GeneralProtection(0));
  }

  const uint64_t load = rfbm & xstate_bv;
  std::vector<uint8_t> legacy(kLegacyWrittenEnd, 0);
  const bool load_mxcsr = compacted ? (load & 2) != 0 : (rfbm & 6) != 0;
  if ((load & 3) || load_mxcsr) {
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(la.address, legacy, read));
    if (f) return Completion::Faulted(*f);
  }
  const uint32_t mxcsr = load_mxcsr ? Load32(legacy.data() + kMxcsrOffset) : kMxcsrDefault;
  if (load_mxcsr && (mxcsr & ~layout.mxcsr_mask)) return Completion::Faulted(Fault::GeneralProtection(0));
  std::vector<std::pair<int, std::vector<uint8_t>>> components;
  for (int i = 2; i < 63; ++i) {
    if (!(load >> i & 1)) continue;
    const XsaveComponent& c = layout.components[i];
    if (c.supervisor || c.standard_offset + c.size > st.image.size()) {
      return absl::UnimplementedError(absl::StrFormat("XRSTOR of state component %d is not supported", i));
    }
    const uint32_t offset = compacted ? layout.CompactedOffset(xcomp_bv, i) : c.standard_offset;
    std::vector<uint8_t> data(c.size);
    ASSIGN_OR_RETURN(std::optional<Fault> f, cpu.Read(la.address + offset, data, read));
    if (f) return Completion::Faulted(*f);
    components.emplace_back(i, std::move(data));
  }

  // Everything is read and checked: apply.
  if (rfbm & 1) {
    if (load & 1) {
      LoadX87(layout, legacy.data(), rex_w, st);
    } else {
      InitX87(st);
    }
  }
  if (rfbm & 2) {
    if (load & 2) {
      std::copy_n(legacy.begin() + kXmmOffset, kXmmSize, st.image.begin() + kXmmOffset);
    } else {
      std::fill_n(st.image.begin() + kXmmOffset, kXmmSize, 0);
    }
  }
  if (load_mxcsr || (compacted && (rfbm & 2))) Store32(st.image.data() + kMxcsrOffset, mxcsr);
  for (int i = 2; i < 63; ++i) {
    if (!(rfbm >> i & 1) || layout.components[i].supervisor) continue;
    const XsaveComponent& c = layout.components[i];
    std::fill_n(st.image.begin() + c.standard_offset, c.size, 0);
  }
  for (auto& [i, data] : components) {
    std::copy(data.begin(), data.end(), st.image.begin() + layout.components[i].standard_offset);
  }
  SetXinuse(st, rfbm, xstate_bv);
  RETURN_IF_ERROR(cpu.SetExtendedState(st));
  return Completion::Retired();
}

}  // namespace coalesce
