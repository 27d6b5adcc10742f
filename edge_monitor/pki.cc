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

// The CA's certificate and key, checked to belong together.
struct CaPair {
  ossl::X509Ptr cert;
  ossl::Key key;
};
absl::StatusOr<CaPair> ParseCa(const PemPair& ca) {
  ASSIGN_OR_RETURN(auto certs, ossl::ParseCertificates(ca.cert_pem, "CA certificate"));
  ASSIGN_OR_RETURN(auto key, ossl::ParsePrivateKey(ca.key_pem, "CA key"));
  if (X509_check_private_key(certs[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CA key is not the key of the CA certificate");
  }
  return CaPair{std::move(certs[0]), std::move(key)};
}

using Asn1Time = std::unique_ptr<ASN1_TIME, ossl::Deleter<ASN1_TIME_free>>;
using Asn1Integer = std::unique_ptr<ASN1_INTEGER, ossl::Deleter<ASN1_INTEGER_free>>;
using BigNum = std::unique_ptr<BIGNUM, ossl::Deleter<BN_free>>;

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
  ASSIGN_OR_RETURN(CaPair signer, ParseCa(ca));
  X509* issuer = signer.cert.get();
  EVP_PKEY* ca_key = signer.key.get();
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
  if (X509_sign(c, ca_key, EVP_sha256()) == 0) return Fail("X509_sign");
  return ToPem(c, key.get());
}

absl::StatusOr<std::string> CreateCrl(const PemPair& ca, const std::vector<Revocation>& revoked, absl::Time next_update) {
  ASSIGN_OR_RETURN(CaPair signer, ParseCa(ca));
  X509* issuer = signer.cert.get();
  EVP_PKEY* ca_key = signer.key.get();
  std::unique_ptr<X509_CRL, ossl::Deleter<X509_CRL_free>> crl(X509_CRL_new());
  if (!crl) return Fail("X509_CRL_new");
  X509_CRL_set_version(crl.get(), 1);  // v2: extensions (the CRL number)
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer));
  const absl::Time now = absl::Now();
  Asn1Time last(ASN1_TIME_set(nullptr, absl::ToTimeT(now)));
  Asn1Time next(ASN1_TIME_set(nullptr, absl::ToTimeT(next_update)));
  if (!last || !next || X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return Fail("X509_CRL_set1_*Update");
  }
  for (const Revocation& r : revoked) {
    BIGNUM* raw = nullptr;
    if (BN_hex2bn(&raw, r.serial_hex.c_str()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("'", r.serial_hex, "' is not a serial number in hex"));
    }
    BigNum bn(raw);
    Asn1Integer serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    Asn1Time when(ASN1_TIME_set(nullptr, absl::ToTimeT(r.when)));
    X509_REVOKED* entry = X509_REVOKED_new();
    if (!serial || !when || entry == nullptr || X509_REVOKED_set_serialNumber(entry, serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry, when.get()) != 1 || X509_CRL_add0_revoked(crl.get(), entry) != 1) {
      X509_REVOKED_free(entry);
      return Fail("X509_REVOKED");
    }
  }
  X509_CRL_sort(crl.get());
  // The CRL number grows with time, so a peer can tell a newer list from an older one.
  Asn1Integer number(ASN1_INTEGER_new());
  if (!number || ASN1_INTEGER_set_int64(number.get(), absl::ToUnixSeconds(now)) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return Fail("CRL number");
  }
  if (X509_CRL_sign(crl.get(), ca_key, EVP_sha256()) == 0) return Fail("X509_CRL_sign");
  return ossl::CrlToPem(crl.get());
}

absl::StatusOr<std::vector<Revocation>> ReadCrl(const std::string& ca_cert_pem, const std::string& crl_pem) {
  ASSIGN_OR_RETURN(auto ca_certs, ossl::ParseCertificates(ca_cert_pem, "CA certificate"));
  ASSIGN_OR_RETURN(auto crls, ossl::ParseCrls(crl_pem, "CRL"));
  RETURN_IF_ERROR(ossl::CheckCrlSignedBy(crls[0].get(), ca_certs[0].get()));
  std::vector<Revocation> out;
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crls[0].get());
  for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
    const X509_REVOKED* entry = sk_X509_REVOKED_value(entries, i);
    struct tm tm {};
    absl::Time when = absl::InfinitePast();
    if (ASN1_TIME_to_tm(X509_REVOKED_get0_revocationDate(entry), &tm) == 1) when = absl::FromTM(tm, absl::UTCTimeZone());
    out.push_back(Revocation{ossl::SerialHex(X509_REVOKED_get0_serialNumber(entry)), when});
  }
  return out;
}

absl::StatusOr<std::string> CertificateSerial(const std::string& cert_pem) {
  ASSIGN_OR_RETURN(auto certs, ossl::ParseCertificates(cert_pem, "certificate"));
  return ossl::SerialHex(X509_get0_serialNumber(certs[0].get()));
}

}  // namespace coalesce
