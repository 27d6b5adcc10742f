#include "edge_monitor/edge_agent_flags.h"

#include <charconv>

#include "absl/strings/str_cat.h"
#include "edge_monitor/host_port.h"

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
absl::StatusOr<absl::Duration> ParseSeconds(const std::string& flag, const std::string& v, uint32_t max) {
  uint32_t seconds = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec != std::errc() || p != v.data() + v.size() || seconds < 1 || seconds > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("edge: ", flag, " '", v, "' is not a number of seconds (1..", max, ")"));
  }
  return absl::Seconds(seconds);
}

}  // namespace

absl::StatusOr<EdgeAgentFlags> ParseEdgeAgentFlags(const std::vector<std::string>& args,
                                                   const EdgeCapacity& default_capacity) {
  EdgeAgentFlags flags;
  flags.capacity = default_capacity;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i];
    std::optional<std::string> value;
    if (name == "-h" || name == "--help") {
      flags.help = true;
      continue;
    }
    if (name.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("edge: unexpected argument '", name, "' (see --help)"));
    }
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (value) return *value;
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("edge: ", name, " needs a value"));
      return args[++i];
    };
    if (name == "--listen") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      if (auto hp = ParseHostPort(*v, "--listen", /*allow_port_zero=*/true); !hp.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("edge: ", hp.status().message()));
      }
      flags.listen = *v;
    } else if (name == "--capacity") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      auto capacity = ParseCapacityFlag(*v, flags.capacity);
      if (!capacity.ok()) return absl::InvalidArgumentError(absl::StrCat("edge: ", capacity.status().message()));
      flags.capacity = *capacity;
    } else if (name == "--runtime") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError("edge: --runtime needs a path");
      flags.runtime_executable = *v;
    } else if (name == "--tls-ca" || name == "--tls-cert" || name == "--tls-key" || name == "--tls-crl") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError(absl::StrCat("edge: ", name, " needs a file"));
      (name == "--tls-ca"     ? flags.tls.ca
       : name == "--tls-cert" ? flags.tls.cert
       : name == "--tls-key"  ? flags.tls.key
                              : flags.tls.crl) = *v;
    } else if (name == "--insecure") {
      if (value) return absl::InvalidArgumentError("edge: --insecure takes no value");
      flags.insecure = true;
    } else if (name == "--max-load") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      double x = 0;
      auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
      if (ec != std::errc() || p != v->data() + v->size() || !(x > 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("edge: --max-load '", *v, "' is not a load per CPU larger than 0 (e.g. 0.8)"));
      }
      flags.limits.max_load_per_cpu = x;
    } else if (name == "--min-battery") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      uint32_t percent = 0;
      auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), percent);
      if (ec != std::errc() || p != v->data() + v->size() || percent > 100) {
        return absl::InvalidArgumentError(absl::StrCat("edge: --min-battery '", *v, "' is not a percentage (0..100)"));
      }
      flags.limits.min_battery_percent = percent;
    } else if (name == "--departure-grace" || name == "--max-lease") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      const bool grace = name == "--departure-grace";
      auto seconds = ParseSeconds(name, *v, grace ? 600 : 86400);
      if (!seconds.ok()) return seconds.status();
      (grace ? flags.departure_grace : flags.max_lease) = *seconds;
    } else if (name == "--control") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError("edge: --control needs a path");
      flags.control = *v;
    } else if (name == "--announce") {
      // The value is optional (--announce alone announces under the default name), so only "=NAME" gives one.
      flags.announce = true;
      if (value) {
        if (value->empty() || value->size() > 63) {
          return absl::InvalidArgumentError(absl::StrCat("edge: --announce name '", *value, "': 1 to 63 bytes"));
        }
        flags.announce_name = *value;
      }
    } else if (name == "--log-level") {
      auto v = take_value();
      if (!v.ok()) return v.status();
      LogLevel level;
      if (!ParseLogLevel(*v, &level)) {
        return absl::InvalidArgumentError(
            absl::StrCat("edge: --log-level '", *v, "' is not one of debug, info, warning, error"));
      }
      flags.log_level = level;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("edge: unknown flag '", name, "' (see --help)"));
    }
  }
  if (!flags.help && flags.listen.empty()) {
    return absl::InvalidArgumentError("edge: --listen HOST:PORT is required (see --help)");
  }
  return flags;
}

}  // namespace coalesce
