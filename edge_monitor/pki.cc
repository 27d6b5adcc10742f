#include "edge_monitor/pki.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/rand.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "edge_monitor/openssl_util.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

absl::Status Fail(const char* what) { return absl::InternalError(absl::StrCat(what, ": ", ossl::TakeErrors())); }

bool IsIpAddress(const std::string& name) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, name.c_str(), buf) == 1 || ::inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return Fail("X509V3_EXT_conf_nid");
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? absl::OkStatus() : Fail("X509_add_ext");
}

// A certificate for `key` with a random serial, the name and the validity; signed later.
absl::StatusOr<ossl::X509Ptr> NewCertificate(EVP_PKEY* key, const std::string& common_name, const Validity& v) {
  ossl::X509Ptr cert(X509_new());
  if (!cert) return Fail("X509_new");
  X509_set_version(cert.get(), 2);  // v3
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return Fail("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(v.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(v.not_after));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("Coalesce"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  if (X509_set_pubkey(cert.get(), key) != 1) return Fail("X509_set_pubkey");
  return cert;
}

absl::StatusOr<ossl::Key> NewKey() {
  ossl::Key key(EVP_EC_gen("P-256"));
  if (!key) return Fail("EVP_EC_gen");
  return key;
}

absl::StatusOr<PemPair> ToPem(X509* cert, EVP_PKEY* key) {
  PemPair out;
  ASSIGN_OR_RETURN(auto c, ossl::CertificateToPem(cert));
  ASSIGN_OR_RETURN(auto k, ossl::PrivateKeyToPem(key));
  out.cert_pem = std::move(c);
  out.key_pem = std::move(k);
  return out;
}

}  // namespace

Validity Validity::Days(int days) {
  const absl::Time now = absl::Now();
  return Validity{now - absl::Hours(1), now + absl::Hours(24) * days};
}

absl::StatusOr<PemPair> CreateCa(const std::string& common_name, const Validity& validity) {
  ASSIGN_OR_RETURN(auto key, NewKey());
  ASSIGN_OR_RETURN(auto cert, NewCertificate(key.get(), common_name, validity));
  X509* c = cert.get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
                            std::pair{NID_key_usage, "critical,keyCertSign,cRLSign"},
                            std::pair{NID_subject_key_identifier, "hash"}}) {
    if (absl::Status st = AddExtension(c, c, nid, value); !st.ok()) return st;
  }
  if (X509_sign(c, key.get(), EVP_sha256()) == 0) return Fail("X509_sign");
  return ToPem(c, key.get());
}

absl::StatusOr<PemPair> IssueNodeCertificate(const PemPair& ca, const std::string& common_name,
                                             const std::vector<std::string>& names, const Validity& validity) {
  if (names.empty()) return absl::InvalidArgumentError("a node certificate needs at least one address or host name");
  ASSIGN_OR_RETURN(auto ca_certs, ossl::ParseCertificates(ca.cert_pem, "CA certificate"));
  ASSIGN_OR_RETURN(auto ca_key, ossl::ParsePrivateKey(ca.key_pem, "CA key"));
  X509* issuer = ca_certs[0].get();
  if (X509_check_private_key(issuer, ca_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CA key is not the key of the CA certificate");
  }
  ASSIGN_OR_RETURN(auto key, NewKey());
  ASSIGN_OR_RETURN(auto cert, NewCertificate(key.get(), common_name, validity));
  X509* c = cert.get();
  X509_set_issuer_name(c, X509_get_subject_name(issuer));
  std::vector<std::string> alt;
  for (const std::string& n : names) alt.push_back(absl::StrCat(IsIpAddress(n) ? "IP:" : "DNS:", n));
  for (auto [nid, value] : {std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
                            std::pair{NID_key_usage, std::string("critical,digitalSignature,keyEncipherment")},
                            std::pair{NID_ext_key_usage, std::string("serverAuth,clientAuth")},
                            std::pair{NID_authority_key_identifier, std::string("keyid")},
                            std::pair{NID_subject_alt_name, absl::StrJoin(alt, ",")}}) {
    if (absl::Status st = AddExtension(c, issuer, nid, value); !st.ok()) return st;
  }
  if (X509_sign(c, ca_key.get(), EVP_sha256()) == 0) return Fail("X509_sign");
  return ToPem(c, key.get());
}

}  // namespace coalesce
