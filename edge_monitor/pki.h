// A small certificate authority for Coalesce's control plane (`coalesce pki`, and the tests' throwaway CAs):
// an ECDSA P-256 CA, node certificates it signs for both TLS roles (server and client), naming the node's
// addresses and host names in subjectAltName so the home can check it dialed the right agent, and the CA's
// certificate revocation list (CRL).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace coalesce {

struct PemPair {
  std::string cert_pem;
  std::string key_pem;
};

struct Validity {
  absl::Time not_before;
  absl::Time not_after;
  // From now for `days` (starting an hour ago, so clocks a little behind accept it).
  static Validity Days(int days);
};

absl::StatusOr<PemPair> CreateCa(const std::string& common_name, const Validity& validity);

// `names`: IP addresses (v4 or v6) and DNS names, each becomes a subjectAltName entry; at least one.
absl::StatusOr<PemPair> IssueNodeCertificate(const PemPair& ca, const std::string& common_name,
                                             const std::vector<std::string>& names, const Validity& validity);

// One revoked certificate: its serial number in hex (ossl::SerialHex) and when it was revoked.
struct Revocation {
  std::string serial_hex;
  absl::Time when;
};

// A CRL signed by `ca` listing `revoked`, issued now and promising the next one by `next_update`.
absl::StatusOr<std::string> CreateCrl(const PemPair& ca, const std::vector<Revocation>& revoked, absl::Time next_update);

// The revocations in `crl_pem`; InvalidArgument when it is not a CRL signed by the CA in `ca_cert_pem`.
absl::StatusOr<std::vector<Revocation>> ReadCrl(const std::string& ca_cert_pem, const std::string& crl_pem);

// The serial number (hex) of the first certificate in `cert_pem`.
absl::StatusOr<std::string> CertificateSerial(const std::string& cert_pem);

}  // namespace coalesce
