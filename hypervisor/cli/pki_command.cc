#include "hypervisor/cli/pki_command.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edge_monitor/pki.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/flag_parser.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {
namespace {

constexpr char kPkiUsage[] =
    "usage: coalesce pki ca DIR [--name NAME] [--days N]\n"
    "       coalesce pki issue DIR NODE --san ADDR[,ADDR...] [--days N] [--replace]\n"
    "       coalesce pki revoke DIR NODE [--days N]\n"
    "       coalesce pki crl DIR [--days N]\n"
    "\n"
    "  ca      creates DIR/ca.pem and DIR/ca.key (mode 0600): an ECDSA P-256 CA for one site (and DIR, mode\n"
    "          0700, if it does not exist; its parent must)\n"
    "  issue   creates DIR/NODE.pem and DIR/NODE.key signed by DIR/ca.*, valid as TLS server and client;\n"
    "          --san lists the IP addresses and host names the node is reached by (an agent's --listen host);\n"
    "          --replace renews them in place (each file replaced in one step): running nodes that use them\n"
    "          present the new certificate within seconds, without a restart\n"
    "  revoke  adds DIR/NODE.pem's certificate to the CA's revocation list DIR/ca.crl (created if need be)\n"
    "  crl     writes DIR/ca.crl again, same entries, with a new next-update date (an expired CRL refuses\n"
    "          every peer)\n"
    "  --days N  validity (default: 365 for a CA, 90 for a node, 30 for a CRL)\n"
    "\n"
    "Use them as --tls-ca DIR/ca.pem --tls-cert DIR/NODE.pem --tls-key DIR/NODE.key [--tls-crl DIR/ca.crl] on\n"
    "`coalesce run` and `coalesce edge`. Existing files are never overwritten, except by --replace and the CRL.\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "coalesce pki: %s\n", message.c_str());
  return exit_status::kUsage;
}

// Writes NAME.key, then NAME.pem: new files, or with `replace` each one replaced in one step (a node reading
// them between the two renames sees a key of another certificate, and its handshakes may fail until its next
// read, kTlsReloadSeconds later).
absl::Status WritePair(const std::string& dir, const std::string& name, const PemPair& pair, bool replace = false) {
  const std::string cert = absl::StrCat(dir, "/", name, ".pem"), key = absl::StrCat(dir, "/", name, ".key");
  auto write = replace ? ReplaceFile : WriteNewFile;
  if (absl::Status st = write(key, pair.key_pem, 0600); !st.ok()) return st;
  if (absl::Status st = write(cert, pair.cert_pem, 0644); !st.ok()) return st;
  std::printf("wrote %s and %s\n", cert.c_str(), key.c_str());
  return absl::OkStatus();
}

// DIR/ca.crl with the entries it had (none if it did not exist), plus NODE's certificate when `node` is not
// empty, valid for `days`.
absl::Status WriteCrl(const std::string& dir, const std::string& node, int days) {
  ASSIGN_OR_RETURN(std::string ca_cert, ReadSmallFile(dir + "/ca.pem", 1 << 20, "CA certificate"));
  ASSIGN_OR_RETURN(std::string ca_key, ReadSmallFile(dir + "/ca.key", 1 << 20, "CA key"));
  const std::string path = dir + "/ca.crl";
  std::vector<Revocation> revoked;
  if (auto existing = ReadSmallFile(path, 16 << 20, "CRL"); existing.ok()) {
    auto read = ReadCrl(ca_cert, *existing);
    if (!read.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", read.status().message()));
    revoked = *std::move(read);
  }
  if (!node.empty()) {
    const std::string cert_path = absl::StrCat(dir, "/", node, ".pem");
    ASSIGN_OR_RETURN(std::string cert, ReadSmallFile(cert_path, 1 << 20, "certificate"));
    ASSIGN_OR_RETURN(std::string serial, CertificateSerial(cert));
    bool listed = false;
    for (const Revocation& r : revoked) listed |= r.serial_hex == serial;
    if (listed) {
      std::printf("%s (serial %s) is already revoked\n", cert_path.c_str(), serial.c_str());
    } else {
      revoked.push_back(Revocation{serial, absl::Now()});
      std::printf("revoked %s (serial %s)\n", cert_path.c_str(), serial.c_str());
    }
  }
  ASSIGN_OR_RETURN(std::string crl, CreateCrl(PemPair{ca_cert, ca_key}, revoked, absl::Now() + absl::Hours(24) * days));
  RETURN_IF_ERROR(ReplaceFile(path, crl, 0644));
  std::printf("wrote %s: %zu revoked, next update in %d days\n", path.c_str(), revoked.size(), days);
  return absl::OkStatus();
}

}  // namespace

int PkiCommand(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kPkiUsage, args.empty() ? stderr : stdout);
    return args.empty() ? exit_status::kUsage : 0;
  }
  const std::string& verb = args[0];
  std::vector<std::string> positional;
  std::string name = "Coalesce CA", san;
  int days = verb == "ca" ? 365 : verb == "issue" ? 90 : 30;
  bool replace = false;
  FlagParser flags;
  flags.Switch("--replace", &replace)
      .Value("--name", StoreText(&name))
      .Value("--san", StoreText(&san))
      .Value("--days",
             [&days](absl::string_view flag, const std::string& v) {
               if (!absl::SimpleAtoi(v, &days) || days < 1 || days > 36500) {
                 return absl::InvalidArgumentError(absl::StrCat(flag, ": '", v, "' is not a number of days (1-36500)"));
               }
               return absl::OkStatus();
             })
      .Positional(&positional);
  if (absl::Status st = flags.Parse(std::vector<std::string>(args.begin() + 1, args.end())); !st.ok()) {
    return Fail(absl::StrCat(st.message(), "\n\n", kPkiUsage));
  }
  if (verb == "ca") {
    if (positional.size() != 1) return Fail(absl::StrCat("ca takes one directory\n\n", kPkiUsage));
    if (::mkdir(positional[0].c_str(), 0700) != 0 && errno != EEXIST) {
      return Fail(std::string(ErrnoStatus(absl::StrCat("cannot create ", positional[0])).message()));
    }
    auto ca = CreateCa(name, Validity::Days(days));
    if (!ca.ok()) return Fail(std::string(ca.status().message()));
    if (absl::Status st = WritePair(positional[0], "ca", *ca); !st.ok()) return Fail(std::string(st.message()));
    return 0;
  }
  if (verb == "issue") {
    if (positional.size() != 2) return Fail(absl::StrCat("issue takes a directory and a node name\n\n", kPkiUsage));
    if (san.empty()) return Fail("issue needs --san: the addresses or host names the node is reached by");
    const std::string& dir = positional[0];
    auto cert = ReadSmallFile(dir + "/ca.pem", 1 << 20, "CA certificate");
    if (!cert.ok()) return Fail(std::string(cert.status().message()));
    auto key = ReadSmallFile(dir + "/ca.key", 1 << 20, "CA key");
    if (!key.ok()) return Fail(std::string(key.status().message()));
    std::vector<std::string> names = absl::StrSplit(san, ',', absl::SkipEmpty());
    auto issued = IssueNodeCertificate(PemPair{*cert, *key}, positional[1], names, Validity::Days(days));
    if (!issued.ok()) return Fail(std::string(issued.status().message()));
    if (absl::Status st = WritePair(dir, positional[1], *issued, replace); !st.ok()) {
      return Fail(std::string(st.message()));
    }
    return 0;
  }
  if (verb == "revoke" || verb == "crl") {
    const size_t want = verb == "revoke" ? 2 : 1;
    if (positional.size() != want) {
      return Fail(absl::StrCat(verb == "revoke" ? "revoke takes a directory and a node name"
                                                : "crl takes a directory",
                               "\n\n", kPkiUsage));
    }
    absl::Status st = WriteCrl(positional[0], verb == "revoke" ? positional[1] : "", days);
    return st.ok() ? 0 : Fail(std::string(st.message()));
  }
  return Fail(absl::StrCat("unknown pki command '", verb, "'\n\n", kPkiUsage));
}

}  // namespace coalesce
