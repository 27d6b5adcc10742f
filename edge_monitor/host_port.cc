#include "edge_monitor/host_port.h"

#include <arpa/inet.h>

#include <cctype>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace coalesce {
namespace {

// RFC 1123 host name: labels of letters, digits and '-', not starting or ending with '-', separated by dots.
bool IsHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label_len = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (label_len == 0 || prev == '-') return false;
      label_len = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      if (label_len == 0 && c == '-') return false;
      if (++label_len > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return label_len > 0 && prev != '-';
}

}  // namespace

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what, bool allow_port_zero) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": '", std::string(text),
                                                   "' is not host:port (", std::string(why), ")"));
  };
  HostPort out;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    out.host = std::string(text.substr(1, close - 1));
    in6_addr addr6{};
    if (inet_pton(AF_INET6, out.host.c_str(), &addr6) != 1) return bad("bad IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("missing ':port'");
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("missing ':port'");
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return bad("write IPv6 addresses as [addr]:port");
    if (out.host.empty()) return bad("empty host");
    // Dotted digits must be a valid IPv4 address; anything else must be a valid host name.
    const bool all_digits_and_dots =
        out.host.find_first_not_of("0123456789.") == std::string::npos;
    in_addr addr4{};
    if (all_digits_and_dots ? inet_pton(AF_INET, out.host.c_str(), &addr4) != 1 : !IsHostName(out.host)) {
      return bad("bad host");
    }
  }
  uint32_t port = 0;
  if (port_text.empty() || port_text.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &port) || port > 65535) {
    return bad("port must be a number 1..65535");
  }
  if (port == 0 && !allow_port_zero) return bad("port must be a number 1..65535");
  out.port = static_cast<uint16_t>(port);
  return out;
}

}  // namespace coalesce
