// Certificate revocation on the control plane: the CA's certificate revocation list (CRL, PEM: what
// `coalesce pki revoke` writes, or any CA tool), consulted on every TLS handshake by both sides on top of gRPC's
// own chain check, through a gRPC certificate verifier. The CRL file (and the CA file it is checked against) is
// read again whenever it changes, so a revocation refuses the next connection without a restart; a replacement
// that does not parse or is not the CA's is refused, logged, and the last good list kept.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/security/tls_certificate_verifier.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "edge_monitor/openssl_util.h"
#include "hypervisor/base/small_file.h"

namespace coalesce {

class RevocationList {
 public:
  // Reads and checks both files: InvalidArgument naming the file when the CRL does not parse, is not signed by
  // the CA, or has expired (its next update is past).
  static absl::StatusOr<std::shared_ptr<RevocationList>> Load(const std::string& crl_path, const std::string& ca_path);

  // OK when the peer's certificate (PEM) chains to the CA (through any certificate of `chain_pem`, which may be
  // empty) and is not revoked; PermissionDenied naming the certificate and OpenSSL's reason ("certificate
  // revoked", "CRL has expired") otherwise. Reloads the files first when they changed.
  absl::Status Check(std::string_view cert_pem, std::string_view chain_pem = {}) ABSL_LOCKS_EXCLUDED(mu_);

  // Whether `cert` itself is revoked by the current list (a node's own certificate, checked at start).
  absl::Status CheckOwn(X509* cert) ABSL_LOCKS_EXCLUDED(mu_);

  int64_t refused() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& crl_path() const { return crl_path_; }

 private:
  RevocationList(std::string crl_path, std::string ca_path) : crl_path_(std::move(crl_path)), ca_path_(std::move(ca_path)) {}

  // Reads both files into a new store when either changed since the last read.
  absl::Status ReloadIfChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status VerifyLocked(X509* leaf, STACK_OF(X509)* untrusted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string crl_path_;
  const std::string ca_path_;
  mutable absl::Mutex mu_;
  ossl::Store store_ ABSL_GUARDED_BY(mu_);
  FileStamp crl_stamp_ ABSL_GUARDED_BY(mu_);
  FileStamp ca_stamp_ ABSL_GUARDED_BY(mu_);
  int64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
};

// A gRPC certificate verifier that refuses peers `list` refuses (logged with the peer's subject and reason).
std::shared_ptr<grpc::experimental::CertificateVerifier> MakeRevocationVerifier(std::shared_ptr<RevocationList> list);

}  // namespace coalesce
