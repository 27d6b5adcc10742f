// Mutual TLS for the control plane (home <-> edge agent gRPC), with gRPC's TLS credentials: both sides
// present a certificate that chains to the CA they were given, the home checks that the agent's certificate
// names the address it dialed, and with a CRL (--tls-crl) each side refuses a revoked peer (tls_revocation.h).
// Certificates are checked when loaded (pair, dates, chain, revocation) so a bad file is refused at start naming
// the file, and a failed connection is explained by a TLS probe (OpenSSL) instead of gRPC's bare "unavailable".
// Material loaded from files is watched: gRPC reads the CA, certificate and key again every kTlsReloadSeconds,
// and the CRL is read again on the first handshake after it changes, so certificates rotate and revocations take
// effect without a restart. docs/SECURITY.md has what this covers and what it does not.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge_monitor/host_port.h"
#include "hypervisor/base/small_file.h"

namespace coalesce {

// The three PEM files given by --tls-ca, --tls-cert and --tls-key (or the profile): all or none; and the CA's
// revocation list, --tls-crl, optional but only with the three.
struct TlsFiles {
  std::string ca;
  std::string cert;
  std::string key;
  std::string crl;
  [[nodiscard]] bool any() const { return !ca.empty() || !cert.empty() || !key.empty() || !crl.empty(); }
};

// How often gRPC looks for new contents of the CA, certificate and key files.
inline constexpr unsigned kTlsReloadSeconds = 5;

class RevocationList;

struct TlsMaterial {
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string subject;  // the certificate's subject, for logs
  absl::Time not_after;
  TlsFiles files;  // where it was read from (watched for rotation); empty for material made in memory
  std::shared_ptr<RevocationList> revocation;  // the CRL in force; null without --tls-crl
};

// What one side of the control plane uses: TLS material (none: plaintext) and whether plaintext may leave
// loopback (--insecure).
struct ControlPlaneSecurity {
  std::shared_ptr<const TlsMaterial> tls;
  bool insecure = false;
};

// Reads and checks the files: nullopt when none is given; InvalidArgument naming the file when one is missing,
// unreadable, not PEM, when the key does not match the certificate, when the certificate is expired or not yet
// valid, when it does not chain to the CA, or, with a CRL, when the CRL is not the CA's, has expired, or revokes
// this node's own certificate.
absl::StatusOr<std::optional<TlsMaterial>> LoadTls(const TlsFiles& files);

// Tells the log when the files behind `tls` change (gRPC reads them on its own): the certificate now presented,
// or why the new files are not good (an expired certificate, a key of another certificate), so an operator who
// rotates certificates sees the result. Poll() from a periodic loop.
class TlsRotationWatch {
 public:
  explicit TlsRotationWatch(TlsFiles files);
  void Poll();

 private:
  TlsFiles files_;
  FileStamp ca_, cert_, key_;
};

// gRPC credentials: TLS with the peer's certificate required and verified (and checked against the CRL) when
// `tls` is set; plaintext when not.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsMaterial* tls);
std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsMaterial* tls);

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(std::string_view host);

// The plaintext rule: without TLS, only loopback addresses, unless the user said --insecure.
// `what` names the address in the error ("--listen", "edge agent 10.0.0.2:7001").
absl::Status CheckPlaintextAllowed(const HostPort& address, bool tls, bool insecure, std::string_view what);

// Why a TLS (or plaintext) connection to an agent failed, found by a handshake of our own with the same
// material: "the agent requires a client certificate ...", "the agent refused our certificate: certificate
// expired", "the agent's certificate is not trusted: ...", "the agent does not speak TLS ...". Empty when the
// handshake succeeds (the failure is elsewhere).
std::string DiagnoseTlsConnect(const HostPort& address, const TlsMaterial* tls, absl::Duration timeout);

}  // namespace coalesce
