// "host:port" addresses of edge agents and data planes: a DNS name, an IPv4 address or a bracketed IPv6 address.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coalesce {

struct HostPort {
  std::string host;  // Without brackets for IPv6.
  uint16_t port = 0;

  // Back to "host:port" ("[::1]:7001" for IPv6): the form gRPC's channel and server APIs take.
  std::string ToString() const;
};

// `what` names the value in errors: "address: 'foo' is not host:port". Port 0 ("pick one") only with allow_port_zero
// (listening sockets); a peer address always needs a real port.
absl::StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what = "address",
                                       bool allow_port_zero = false);

}  // namespace coalesce
