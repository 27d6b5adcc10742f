#include "hypervisor/boot/aml.h"

#include <cctype>

namespace coalesce::aml {
namespace {

constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0A;
constexpr uint8_t kWordPrefix = 0x0B;
constexpr uint8_t kDWordPrefix = 0x0C;
constexpr uint8_t kStringPrefix = 0x0D;
constexpr uint8_t kQWordPrefix = 0x0E;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kExtOpPrefix = 0x5B;
constexpr uint8_t kDeviceOp = 0x82;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kIfOp = 0xA0;
constexpr uint8_t kReturnOp = 0xA4;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kStoreOp = 0x70;
constexpr uint8_t kArg0Op = 0x68;
constexpr uint8_t kOpRegionOp = 0x80;  // after kExtOpPrefix
constexpr uint8_t kFieldOp = 0x81;     // after kExtOpPrefix
constexpr uint8_t kSystemIoSpace = 0x01;
constexpr uint8_t kFieldByteAccess = 0x01;  // AccessType ByteAcc; LockRule NoLock, UpdateRule Preserve (0)
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kDualNamePrefix = 0x2E;
constexpr uint8_t kMultiNamePrefix = 0x2F;

void Append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

void AppendLe(Bytes& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Opcode(s), PkgLength, then the body.
Bytes WithPkgLength(std::initializer_list<uint8_t> opcode, const Bytes& body) {
  Bytes out(opcode);
  Append(out, PkgLength(body.size()));
  Append(out, body);
  return out;
}

Bytes Concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const Bytes& p : parts) Append(out, p);
  return out;
}

}  // namespace

Bytes PkgLength(size_t body_len) {
  // One byte holds up to 63; otherwise the lead byte's bits 7-6 count the following bytes, its bits 3-0
  // hold the low nibble and each following byte 8 more bits.
  if (body_len + 1 <= 0x3F) return {static_cast<uint8_t>(body_len + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    const size_t total = body_len + 1 + extra;
    if (total < (1ULL << (4 + 8 * extra))) {
      Bytes out;
      out.push_back(static_cast<uint8_t>((extra << 6) | (total & 0xF)));
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  return {};  // > 256 MiB: unreachable for our tables
}

Bytes NameString(std::string_view path) {
  Bytes out;
  if (!path.empty() && path.front() == '\\') {
    out.push_back(kRootChar);
    path.remove_prefix(1);
  }
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    size_t dot = path.find('.');
    segs.push_back(path.substr(0, dot));
    if (dot == std::string_view::npos) break;
    path.remove_prefix(dot + 1);
  }
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  if (segs.empty()) out.push_back(0x00);  // NullName
  for (std::string_view s : segs) {
    for (size_t i = 0; i < 4; ++i) out.push_back(i < s.size() ? static_cast<uint8_t>(s[i]) : '_');
  }
  return out;
}

Bytes Integer(uint64_t v) {
  if (v == 0) return {kZeroOp};
  if (v == 1) return {kOneOp};
  Bytes out;
  if (v <= 0xFF) {
    out.push_back(kBytePrefix);
    AppendLe(out, v, 1);
  } else if (v <= 0xFFFF) {
    out.push_back(kWordPrefix);
    AppendLe(out, v, 2);
  } else if (v <= 0xFFFF'FFFF) {
    out.push_back(kDWordPrefix);
    AppendLe(out, v, 4);
  } else {
    out.push_back(kQWordPrefix);
    AppendLe(out, v, 8);
  }
  return out;
}

Bytes String(std::string_view text) {
  Bytes out;
  out.reserve(text.size() + 2);
  out.push_back(kStringPrefix);
  for (char c : text) out.push_back(static_cast<uint8_t>(c));  // (vector::insert trips GCC 12's -Warray-bounds)
  out.push_back(0);
  return out;
}

uint32_t EisaIdValue(std::string_view id) {
  // Three letters, 5 bits each (A = 1), then four hex digits; stored big-endian within the DWord.
  auto letter = [&](size_t i) { return static_cast<uint32_t>(std::toupper(id[i]) - '@') & 0x1F; };
  auto hex = [&](size_t i) {
    char c = static_cast<char>(std::toupper(id[i]));
    return static_cast<uint32_t>(c >= 'A' ? c - 'A' + 10 : c - '0') & 0xF;
  };
  if (id.size() != 7) return 0;
  uint32_t be = (letter(0) << 26) | (letter(1) << 21) | (letter(2) << 16) | (hex(3) << 12) | (hex(4) << 8) |
                (hex(5) << 4) | hex(6);
  return __builtin_bswap32(be);
}

Bytes EisaId(std::string_view id) {
  Bytes out{kDWordPrefix};
  AppendLe(out, EisaIdValue(id), 4);
  return out;
}

Bytes Name(std::string_view name, const Bytes& value) {
  Bytes out{kNameOp};
  Append(out, NameString(name));
  Append(out, value);
  return out;
}

Bytes Package(const std::vector<Bytes>& elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};
  Append(body, Concat(elements));
  return WithPkgLength({kPackageOp}, body);
}

Bytes Buffer(const Bytes& data) {
  Bytes body = Integer(data.size());
  Append(body, data);
  return WithPkgLength({kBufferOp}, body);
}

Bytes Scope(std::string_view name, const std::vector<Bytes>& terms) {
  Bytes body = NameString(name);
  Append(body, Concat(terms));
  return WithPkgLength({kScopeOp}, body);
}

Bytes Device(std::string_view name, const std::vector<Bytes>& terms) {
  Bytes body = NameString(name);
  Append(body, Concat(terms));
  return WithPkgLength({kExtOpPrefix, kDeviceOp}, body);
}

Bytes Method(std::string_view name, uint8_t arg_count, bool serialized, const std::vector<Bytes>& terms) {
  Bytes body = NameString(name);
  body.push_back(static_cast<uint8_t>((arg_count & 0x7) | (serialized ? 0x08 : 0)));
  Append(body, Concat(terms));
  return WithPkgLength({kMethodOp}, body);
}

Bytes If(const Bytes& predicate, const std::vector<Bytes>& terms) {
  Bytes body = predicate;
  Append(body, Concat(terms));
  return WithPkgLength({kIfOp}, body);
}

Bytes Return(const Bytes& value) {
  Bytes out{kReturnOp};
  Append(out, value);
  return out;
}

Bytes Notify(std::string_view object, const Bytes& value) {
  Bytes out{kNotifyOp};
  Append(out, NameString(object));
  Append(out, value);
  return out;
}

Bytes Store(const Bytes& value, std::string_view target) {
  Bytes out{kStoreOp};
  Append(out, value);
  Append(out, NameString(target));
  return out;
}

Bytes Ref(std::string_view name) { return NameString(name); }

Bytes Arg(uint8_t n) { return {static_cast<uint8_t>(kArg0Op + (n & 0x7))}; }

Bytes Call(std::string_view name, const std::vector<Bytes>& args) {
  Bytes out = NameString(name);
  for (const Bytes& a : args) Append(out, a);
  return out;
}

Bytes SystemIoRegion(std::string_view name, uint16_t base, uint16_t length) {
  Bytes out{kExtOpPrefix, kOpRegionOp};
  Append(out, NameString(name));
  out.push_back(kSystemIoSpace);
  Append(out, Integer(base));
  Append(out, Integer(length));
  return out;
}

Bytes ByteField(std::string_view region, const std::vector<FieldUnit>& units) {
  Bytes body = NameString(region);
  body.push_back(kFieldByteAccess);
  for (const FieldUnit& u : units) {
    // A field's width is a PkgLength-style number that counts bits, not itself (20.2.5.2).
    if (u.name.empty()) {
      body.push_back(0x00);  // ReservedField
    } else {
      Append(body, NameString(u.name));
    }
    if (u.bits <= 0x3F) {
      body.push_back(static_cast<uint8_t>(u.bits));
    } else {
      body.push_back(static_cast<uint8_t>(0x40 | (u.bits & 0xF)));
      body.push_back(static_cast<uint8_t>(u.bits >> 4));  // up to 4095 bits
    }
  }
  return WithPkgLength({kExtOpPrefix, kFieldOp}, body);
}

ResourceTemplate& ResourceTemplate::Io(uint16_t base, uint8_t len) {
  // Small item 0x08 (I/O port), 7 bytes: decode-16, min, max, alignment, length.
  descriptors_.push_back(0x47);
  descriptors_.push_back(0x01);
  AppendLe(descriptors_, base, 2);
  AppendLe(descriptors_, base, 2);
  descriptors_.push_back(0x01);
  descriptors_.push_back(len);
  return *this;
}

ResourceTemplate& ResourceTemplate::IrqNoFlags(uint8_t irq) {
  // Small item 0x04 (IRQ), 2 bytes: the mask (no flags byte means edge, active-high, exclusive).
  descriptors_.push_back(0x22);
  AppendLe(descriptors_, 1u << (irq & 0xF), 2);
  return *this;
}

ResourceTemplate& ResourceTemplate::Memory32Fixed(uint32_t base, uint32_t len) {
  // Large item 0x06, 9 bytes: read/write flag, base, length.
  descriptors_.push_back(0x86);
  AppendLe(descriptors_, 9, 2);
  descriptors_.push_back(0x01);
  AppendLe(descriptors_, base, 4);
  AppendLe(descriptors_, len, 4);
  return *this;
}

ResourceTemplate& ResourceTemplate::QWordMemory(uint64_t base, uint64_t len) {
  // Large item 0x0A (QWord address space), 43 bytes (ACPI 6.5, 6.4.3.5.1): resource type 0 (memory); general
  // flags: consumer (bit 0), minimum and maximum fixed (bits 2, 3), positive decode; type flags: read/write
  // (bit 0), cacheable (bits 1-2 = 1), AddressRangeMemory; then granularity, minimum, maximum, translation
  // offset and length, 8 bytes each.
  descriptors_.push_back(0x8A);
  AppendLe(descriptors_, 43, 2);
  descriptors_.push_back(0x00);
  descriptors_.push_back(0x0D);
  descriptors_.push_back(0x03);
  AppendLe(descriptors_, 0, 8);
  AppendLe(descriptors_, base, 8);
  AppendLe(descriptors_, base + len - 1, 8);
  AppendLe(descriptors_, 0, 8);
  AppendLe(descriptors_, len, 8);
  return *this;
}

ResourceTemplate& ResourceTemplate::Interrupt(uint32_t gsi, bool level_triggered) {
  // Large item 0x09 (extended interrupt), 6 bytes: flags (bit0 consumer, bit1 edge), count, one GSI.
  descriptors_.push_back(0x89);
  AppendLe(descriptors_, 6, 2);
  descriptors_.push_back(static_cast<uint8_t>(0x01 | (level_triggered ? 0 : 0x02)));
  descriptors_.push_back(1);
  AppendLe(descriptors_, gsi, 4);
  return *this;
}

Bytes ResourceTemplate::ToBuffer() const {
  Bytes data = descriptors_;
  data.push_back(0x79);  // End Tag; checksum 0 means "treat as correct"
  data.push_back(0x00);
  return Buffer(data);
}

}  // namespace coalesce::aml
