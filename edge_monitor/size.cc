#include "edge_monitor/size.h"

#include <cctype>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace coalesce {
namespace {

absl::Status NotASize(std::string_view text, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": '", std::string(text),
                                                 "' is not a size (bytes, or a number with K, M, G or T)"));
}

// Returns the shift for a suffix (after the digits), or -1 if it is not one we accept.
int SuffixShift(std::string_view suffix) {
  if (suffix.empty()) return 0;
  int shift = -1;
  switch (absl::ascii_toupper(static_cast<unsigned char>(suffix[0]))) {
    case 'B': return suffix.size() == 1 ? 0 : -1;
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    default: return -1;
  }
  std::string rest = absl::AsciiStrToUpper(std::string(suffix.substr(1)));
  return (rest.empty() || rest == "B" || rest == "IB") ? shift : -1;
}

}  // namespace

absl::StatusOr<uint64_t> ParseSize(std::string_view text, std::string_view what) {
  std::string_view trimmed = text;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.remove_suffix(1);

  size_t digits = 0;
  uint64_t value = 0;
  while (digits < trimmed.size() && std::isdigit(static_cast<unsigned char>(trimmed[digits]))) {
    const uint64_t digit = static_cast<uint64_t>(trimmed[digits] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(what), ": '", std::string(text), "' is too large"));
    }
    value = value * 10 + digit;
    ++digits;
  }
  if (digits == 0) return NotASize(text, what);
  const int shift = SuffixShift(trimmed.substr(digits));
  if (shift < 0) return NotASize(text, what);
  if (shift > 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": '", std::string(text), "' is too large"));
  }
  return value << shift;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr struct {
    int shift;
    char suffix;
  } kUnits[] = {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'K'}};
  if (bytes != 0) {
    for (const auto& unit : kUnits) {
      const uint64_t mask = (uint64_t{1} << unit.shift) - 1;
      if ((bytes & mask) == 0) return absl::StrCat(bytes >> unit.shift, std::string(1, unit.suffix));
    }
  }
  return absl::StrCat(bytes);
}

absl::Status CheckHomeAllowance(uint64_t bytes, std::string_view what, std::string_view text) {
  constexpr uint64_t kMinAllowance = 16ULL << 20;
  constexpr uint64_t kPage = 4096;
  if (bytes < kMinAllowance || bytes % kPage != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(what), ": '", std::string(text), "' must be a multiple of 4K and at least 16M"));
  }
  return absl::OkStatus();
}

}  // namespace coalesce
