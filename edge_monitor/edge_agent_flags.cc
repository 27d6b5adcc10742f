#include "edge_monitor/edge_agent_flags.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"
#include "hypervisor/base/flag_parser.h"

namespace coalesce {

const char* EdgeAgentUsage() {
  return "usage: coalesce edge --listen HOST:PORT [--capacity vcpus=N,memory=SIZE] [--runtime PATH]\n"
         "                     [--tls-ca FILE --tls-cert FILE --tls-key FILE [--tls-crl FILE] | --insecure]\n"
         "                     [--log-level LEVEL]\n"
         "                     [--max-load X] [--min-battery PERCENT] [--departure-grace SECONDS]\n"
         "                     [--max-lease SECONDS] [--control PATH] [--announce[=NAME]]\n"
         "\n"
         "Runs the edge agent: a gRPC service that hosts vCPUs of coalesced VMs for home nodes.\n"
         "\n"
         "  --listen HOST:PORT     address to serve on, e.g. 0.0.0.0:7001 or [::]:7001 (port 0: any free port;\n"
         "                         the bound address is printed on stdout)\n"
         "  --capacity LIST        what this host offers: vcpus=N and/or memory=SIZE (K/M/G/T suffixes);\n"
         "                         default: all online CPUs and all physical memory\n"
         "  --runtime PATH         program started as 'PATH remote-node ...' for each VM (default: this binary)\n"
         "  --tls-ca FILE          CA certificate(s), PEM: only home nodes with a certificate from it are served\n"
         "  --tls-cert FILE        this agent's certificate, PEM (names the addresses homes dial it by)\n"
         "  --tls-key FILE         its private key, PEM (`coalesce pki` makes all three); the three are read again\n"
         "                         when they change (certificate rotation without a restart)\n"
         "  --tls-crl FILE         the CA's revocation list, PEM: homes whose certificate it lists are refused\n"
         "                         (read again when it changes; `coalesce pki revoke`)\n"
         "  --insecure             serve plaintext on a non-loopback --listen (without TLS only loopback is\n"
         "                         allowed); see docs/SECURITY.md\n"
         "  --max-load X           refuse leases while the 1-minute load average per CPU is above X\n"
         "  --min-battery PERCENT  refuse leases while running on battery below PERCENT (0..100)\n"
         "  --departure-grace S    on SIGTERM, how long each VM's runtime has to hand its vCPUs and pages\n"
         "                         back to the home before it is killed (default 15; the guest runs on)\n"
         "  --max-lease S          the longest lease granted (default 300): a home renews its lease well\n"
         "                         before it ends; one not renewed in time sends the VM's vCPUs home\n"
         "  --control PATH         the operator's control socket (default: edge-PORT.sock in\n"
         "                         $COALESCE_RUN_DIR, /run/coalesce as root, else $XDG_RUNTIME_DIR/coalesce);\n"
         "                         `coalesce ctl --socket PATH leases|revoke VM_ID`\n"
         "  --announce[=NAME]      announce this agent on the local network by DNS-SD (mDNS, service type\n"
         "                         _coalesce._tcp) as NAME (default: HOSTNAME port PORT), with TXT records\n"
         "                         for free vCPUs and memory, load and battery, refreshed every 5 s;\n"
         "                         homes find it with `coalesce run --discover dns-sd` or `coalesce discover`\n"
         "  --log-level LEVEL      debug, info, warning or error (default: info)\n"
         "  -h, --help             this text\n"
         "\n"
         "On SIGINT or SIGTERM every hosted VM's vCPUs go back to its home (docs/COALESCENCE.md,\n"
         "\"Departure\"), then the agent exits 0. A lease that ends (expired or revoked) does the same for\n"
         "its VM alone (\"Leases\").\n";
}

namespace {

// A whole number of seconds, 1..max.
FlagParser::Setter StoreWholeSeconds(absl::Duration* out, uint32_t max) {
  return [out, max](absl::string_view flag, const std::string& v) {
    uint32_t seconds = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
    if (ec != std::errc() || p != v.data() + v.size() || seconds < 1 || seconds > max) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " '", v, "' is not a number of seconds (1..", max, ")"));
    }
    *out = absl::Seconds(seconds);
    return absl::OkStatus();
  };
}

}  // namespace

absl::StatusOr<EdgeAgentFlags> ParseEdgeAgentFlags(const std::vector<std::string>& args,
                                                   const EdgeCapacity& default_capacity) {
  EdgeAgentFlags flags;
  flags.capacity = default_capacity;
  FlagParser parser;
  parser.Switch("--help", &flags.help)
      .Alias("-h", "--help")
      .Switch("--insecure", &flags.insecure)
      .Value("--listen",
             [&](absl::string_view flag, const std::string& v) -> absl::Status {
               if (auto hp = ParseHostPort(v, std::string(flag), /*allow_port_zero=*/true); !hp.ok()) {
                 return hp.status();
               }
               flags.listen = v;
               return absl::OkStatus();
             })
      .Value("--capacity",
             [&](absl::string_view, const std::string& v) -> absl::Status {
               auto capacity = ParseCapacityFlag(v, flags.capacity);
               if (!capacity.ok()) return capacity.status();
               flags.capacity = *capacity;
               return absl::OkStatus();
             })
      .Value("--runtime", StoreNonEmpty(&flags.runtime_executable, "a path"))
      .Value("--tls-ca", StoreNonEmpty(&flags.tls.ca, "a file"))
      .Value("--tls-cert", StoreNonEmpty(&flags.tls.cert, "a file"))
      .Value("--tls-key", StoreNonEmpty(&flags.tls.key, "a file"))
      .Value("--tls-crl", StoreNonEmpty(&flags.tls.crl, "a file"))
      .Value("--max-load",
             [&](absl::string_view, const std::string& v) {
               double x = 0;
               auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
               if (ec != std::errc() || p != v.data() + v.size() || !(x > 0)) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("--max-load '", v, "' is not a load per CPU larger than 0 (e.g. 0.8)"));
               }
               flags.limits.max_load_per_cpu = x;
               return absl::OkStatus();
             })
      .Value(
          "--min-battery",
          [&](absl::string_view, const std::string& v) {
            uint32_t percent = 0;
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), percent);
            if (ec != std::errc() || p != v.data() + v.size() || percent > 100) {
              return absl::InvalidArgumentError(absl::StrCat("--min-battery '", v, "' is not a percentage (0..100)"));
            }
            flags.limits.min_battery_percent = percent;
            return absl::OkStatus();
          })
      .Value("--departure-grace", StoreWholeSeconds(&flags.departure_grace, 600))
      .Value("--max-lease", StoreWholeSeconds(&flags.max_lease, 86400))
      .Value("--control", StoreNonEmpty(&flags.control, "a path"))
      // The name is optional (--announce alone announces under the default name), so only "=NAME" gives one.
      .OptionalValue("--announce", &flags.announce,
                     [&](absl::string_view, const std::string& v) {
                       if (v.empty() || v.size() > 63) {
                         return absl::InvalidArgumentError(absl::StrCat("--announce name '", v, "': 1 to 63 bytes"));
                       }
                       flags.announce_name = v;
                       return absl::OkStatus();
                     })
      .Value("--log-level", [&](absl::string_view, const std::string& v) {
        LogLevel level;
        if (!ParseLogLevel(v, &level)) {
          return absl::InvalidArgumentError(
              absl::StrCat("--log-level '", v, "' is not one of debug, info, warning, error"));
        }
        flags.log_level = level;
        return absl::OkStatus();
      });
  if (absl::Status st = parser.Parse(args); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("edge: ", st.message(), " (see --help)"));
  }
  if (!flags.help && flags.listen.empty()) {
    return absl::InvalidArgumentError("edge: --listen HOST:PORT is required (see --help)");
  }
  return flags;
}

}  // namespace coalesce
