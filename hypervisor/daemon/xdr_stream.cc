#include "hypervisor/daemon/xdr_stream.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace coalesce::daemon {
namespace {
constexpr size_t kInitialCapacity = 4096;
size_t Padded(size_t n) { return (n + 3) & ~size_t{3}; }
}  // namespace

XdrEncoder::XdrEncoder() : buffer_(kInitialCapacity) {
  xdrmem_create(&xdr_, reinterpret_cast<char*>(buffer_.data()), static_cast<u_int>(buffer_.size()), XDR_ENCODE);
}

XdrEncoder::~XdrEncoder() { xdr_destroy(&xdr_); }

size_t XdrEncoder::size() const { return xdr_getpos(const_cast<XDR*>(&xdr_)); }

void XdrEncoder::Reserve(size_t extra) {
  const size_t pos = size();
  if (pos + extra <= buffer_.size()) return;
  size_t capacity = buffer_.size();
  while (capacity < pos + extra) capacity *= 2;
  xdr_destroy(&xdr_);
  buffer_.resize(capacity);
  xdrmem_create(&xdr_, reinterpret_cast<char*>(buffer_.data()), static_cast<u_int>(buffer_.size()), XDR_ENCODE);
  xdr_setpos(&xdr_, static_cast<u_int>(pos));
}

template <typename Put>
void XdrEncoder::Write(Put put, size_t needed) {
  Reserve(needed);
  // With the room reserved an xdrmem encode cannot fail; if it ever did the reply would be short, and the
  // client would reject it as malformed rather than read garbage.
  (void)put(&xdr_);
}

void XdrEncoder::PutU32(uint32_t v) {
  Write([&](XDR* x) { return xdr_u_int(x, &v); }, 4);
}
void XdrEncoder::PutI32(int32_t v) {
  Write([&](XDR* x) { return xdr_int(x, &v); }, 4);
}
void XdrEncoder::PutU64(uint64_t v) {
  u_quad_t q = v;
  Write([&](XDR* x) { return xdr_u_hyper(x, &q); }, 8);
}
void XdrEncoder::PutI64(int64_t v) {
  quad_t q = v;
  Write([&](XDR* x) { return xdr_hyper(x, &q); }, 8);
}
void XdrEncoder::PutString(std::string_view s) {
  if (s.size() > kXdrStringMax) s = s.substr(0, kXdrStringMax);
  std::string copy(s);
  char* p = copy.data();
  Write([&](XDR* x) { return xdr_string(x, &p, kXdrStringMax); }, 4 + Padded(copy.size()));
}
void XdrEncoder::PutOptionalString(const std::optional<std::string>& s) {
  PutU32(s.has_value() ? 1 : 0);
  if (s) PutString(*s);
}
void XdrEncoder::PutFixedOpaque(std::span<const uint8_t> bytes) {
  char* p = const_cast<char*>(reinterpret_cast<const char*>(bytes.data()));
  Write([&](XDR* x) { return xdr_opaque(x, p, static_cast<u_int>(bytes.size())); }, Padded(bytes.size()));
}
void XdrEncoder::PutVarOpaque(std::span<const uint8_t> bytes) {
  char* p = const_cast<char*>(reinterpret_cast<const char*>(bytes.data()));
  u_int n = static_cast<u_int>(bytes.size());
  Write([&](XDR* x) { return xdr_bytes(x, &p, &n, n); }, 4 + Padded(bytes.size()));
}

XdrDecoder::XdrDecoder(std::span<const uint8_t> bytes) : copy_(bytes.begin(), bytes.end()) {
  xdrmem_create(&xdr_, reinterpret_cast<char*>(copy_.data()), static_cast<u_int>(copy_.size()), XDR_DECODE);
}

XdrDecoder::~XdrDecoder() { xdr_destroy(&xdr_); }

void XdrDecoder::Fail(std::string what) {
  if (!ok_) return;
  ok_ = false;
  error_ = absl::StrCat(what, " at byte ", xdr_getpos(&xdr_), " of ", copy_.size());
}

uint32_t XdrDecoder::GetU32() {
  u_int v = 0;
  if (ok_ && !xdr_u_int(&xdr_, &v)) Fail("truncated 32-bit value");
  return ok_ ? v : 0;
}
int32_t XdrDecoder::GetI32() {
  int v = 0;
  if (ok_ && !xdr_int(&xdr_, &v)) Fail("truncated 32-bit value");
  return ok_ ? v : 0;
}
uint64_t XdrDecoder::GetU64() {
  u_quad_t v = 0;
  if (ok_ && !xdr_u_hyper(&xdr_, &v)) Fail("truncated 64-bit value");
  return ok_ ? v : 0;
}
int64_t XdrDecoder::GetI64() {
  quad_t v = 0;
  if (ok_ && !xdr_hyper(&xdr_, &v)) Fail("truncated 64-bit value");
  return ok_ ? v : 0;
}
bool XdrDecoder::GetBool() {
  uint32_t v = GetU32();
  if (ok_ && v > 1) Fail(absl::StrCat("boolean ", v, " is neither 0 nor 1"));
  return ok_ && v == 1;
}

std::string XdrDecoder::GetString(uint32_t max) {
  if (!ok_) return {};
  // Check the count first so a huge one is refused before libtirpc allocates for it.
  const u_int start = xdr_getpos(&xdr_);
  const uint32_t count = GetU32();
  if (!ok_) return {};
  if (count > max || count > copy_.size() - xdr_getpos(&xdr_)) {
    Fail(absl::StrCat("string of ", count, " bytes is longer than ", max, " or than the payload"));
    return {};
  }
  xdr_setpos(&xdr_, start);
  char* p = nullptr;
  if (!xdr_string(&xdr_, &p, max)) {
    Fail("malformed string");
    std::free(p);
    return {};
  }
  std::string out(p);
  std::free(p);
  if (out.size() != count) Fail("string holds a NUL byte");
  return out;
}

std::optional<std::string> XdrDecoder::GetOptionalString(uint32_t max) {
  const uint32_t present = GetU32();
  if (!ok_) return std::nullopt;
  if (present > 1) {
    Fail(absl::StrCat("optional-data flag ", present, " is neither 0 nor 1"));
    return std::nullopt;
  }
  if (present == 0) return std::nullopt;
  std::string s = GetString(max);
  if (!ok_) return std::nullopt;
  return s;
}

void XdrDecoder::GetFixedOpaqueInto(uint8_t* out, uint32_t n) {
  if (ok_ && !xdr_opaque(&xdr_, reinterpret_cast<char*>(out), n)) Fail("truncated fixed-size opaque");
}

std::vector<uint8_t> XdrDecoder::GetVarOpaque(uint32_t max) {
  if (!ok_) return {};
  const uint32_t count = GetU32();
  if (!ok_) return {};
  if (count > max || count > copy_.size() - xdr_getpos(&xdr_)) {
    Fail(absl::StrCat("opaque of ", count, " bytes is longer than ", max, " or than the payload"));
    return {};
  }
  std::vector<uint8_t> out(count);
  if (count > 0) GetFixedOpaqueInto(out.data(), count);
  return ok_ ? out : std::vector<uint8_t>{};
}

bool XdrDecoder::Finished() const {
  return ok_ && xdr_getpos(const_cast<XDR*>(&xdr_)) == copy_.size();
}

}  // namespace coalesce::daemon
