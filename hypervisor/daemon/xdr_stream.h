// XDR (RFC 4506) encoding and decoding of the libvirt RPC payloads, on libtirpc's XDR primitives over memory
// (xdrmem). The encoder grows its buffer as needed; the decoder is sticky: the first malformed or truncated
// item marks it failed, later reads return zero values, and the caller checks ok() once at the end. Both are
// pure (no I/O), so every wire format built on them is unit-tested and fuzzable.
#pragma once

#include <rpc/types.h>
#include <rpc/xdr.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coalesce::daemon {

// libvirt's limit for one string (REMOTE_STRING_MAX); longer strings are refused in both directions.
inline constexpr uint32_t kXdrStringMax = 4 * 1024 * 1024;

class XdrEncoder final {
 public:
  XdrEncoder();
  ~XdrEncoder();
  XdrEncoder(const XdrEncoder&) = delete;
  XdrEncoder& operator=(const XdrEncoder&) = delete;

  void PutU32(uint32_t v);
  void PutI32(int32_t v);
  void PutU64(uint64_t v);
  void PutI64(int64_t v);
  void PutBool(bool v) { PutU32(v ? 1 : 0); }
  void PutString(std::string_view s);                    // counted, padded to 4
  void PutOptionalString(const std::optional<std::string>& s);  // XDR pointer: 0, or 1 then the string
  void PutFixedOpaque(std::span<const uint8_t> bytes);   // no count, padded to 4
  void PutVarOpaque(std::span<const uint8_t> bytes);     // counted, padded to 4

  // The bytes written so far.
  [[nodiscard]] std::span<const uint8_t> bytes() const { return {buffer_.data(), size()}; }
  [[nodiscard]] size_t size() const;

 private:
  // Runs `put` on the XDR handle, growing the buffer and retrying when it did not fit.
  template <typename Put>
  void Write(Put put, size_t needed);
  void Reserve(size_t extra);

  std::vector<uint8_t> buffer_;
  XDR xdr_{};
};

class XdrDecoder final {
 public:
  explicit XdrDecoder(std::span<const uint8_t> bytes);
  ~XdrDecoder();
  XdrDecoder(const XdrDecoder&) = delete;
  XdrDecoder& operator=(const XdrDecoder&) = delete;

  uint32_t GetU32();
  int32_t GetI32();
  uint64_t GetU64();
  int64_t GetI64();
  bool GetBool();  // any value other than 0 or 1 fails the decoder
  std::string GetString(uint32_t max = kXdrStringMax);
  std::optional<std::string> GetOptionalString(uint32_t max = kXdrStringMax);
  template <size_t N>
  std::array<uint8_t, N> GetFixedOpaque() {
    std::array<uint8_t, N> out{};
    GetFixedOpaqueInto(out.data(), N);
    return out;
  }
  std::vector<uint8_t> GetVarOpaque(uint32_t max);

  // True while every read so far succeeded.
  [[nodiscard]] bool ok() const { return ok_; }
  // True when every read succeeded and every byte was consumed (a payload with trailing bytes is malformed).
  [[nodiscard]] bool Finished() const;
  // What went wrong first, for the error reply ("" while ok()).
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  void GetFixedOpaqueInto(uint8_t* out, uint32_t n);
  void Fail(std::string what);

  std::vector<uint8_t> copy_;  // xdrmem wants a mutable buffer
  XDR xdr_{};
  bool ok_ = true;
  std::string error_;
};

}  // namespace coalesce::daemon
