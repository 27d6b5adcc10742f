#include "edge_monitor/openssl_util.h"

#include "absl/strings/str_cat.h"

namespace coalesce::ossl {
namespace {

Bio MemoryBio(std::string_view data) {
  return Bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// What was written into a memory BIO.
std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

void FreeOpensslString(char* p) { OPENSSL_free(p); }

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTM(tm, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(std::string_view pem, std::string_view what) {
  Bio bio = MemoryBio(pem);
  std::vector<X509Ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  ERR_clear_error();  // the read that ends the loop leaves "no start line"
  if (certs.empty()) return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": no PEM certificate in it"));
  return certs;
}

absl::StatusOr<Key> ParsePrivateKey(std::string_view pem, std::string_view what) {
  Bio bio = MemoryBio(pem);
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": no PEM private key in it (", TakeErrors(), ")"));
  return key;
}

absl::StatusOr<std::vector<Crl>> ParseCrls(std::string_view pem, std::string_view what) {
  Bio bio = MemoryBio(pem);
  std::vector<Crl> crls;
  while (X509_CRL* c = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) crls.emplace_back(c);
  ERR_clear_error();
  if (crls.empty()) return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": no PEM CRL in it"));
  return crls;
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return absl::InternalError("PEM_write_bio_X509: " + TakeErrors());
  return BioText(bio.get());
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return absl::InternalError("PEM_write_bio_PrivateKey: " + TakeErrors());
  }
  return BioText(bio.get());
}

absl::StatusOr<std::string> CrlToPem(X509_CRL* crl) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl) != 1) return absl::InternalError("PEM_write_bio_X509_CRL: " + TakeErrors());
  return BioText(bio.get());
}

std::string SubjectLine(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  return BioText(bio.get());
}

absl::Time NotBefore(X509* cert) { return AsnTime(X509_get0_notBefore(cert)); }
absl::Time NotAfter(X509* cert) { return AsnTime(X509_get0_notAfter(cert)); }

std::string SerialHex(const ASN1_INTEGER* serial) {
  std::unique_ptr<BIGNUM, Deleter<BN_free>> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return "?";
  std::unique_ptr<char, Deleter<FreeOpensslString>> hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : "?";
}

std::string CrlIssuerLine(X509_CRL* crl) {
  Bio bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_CRL_get_issuer(crl), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  return BioText(bio.get());
}

absl::Status CheckCrlSignedBy(X509_CRL* crl, X509* ca) {
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CRL is issued by ", CrlIssuerLine(crl), ", not by the CA (", SubjectLine(ca), ")"));
  }
  if (X509_CRL_verify(crl, X509_get0_pubkey(ca)) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CRL's signature is not the CA's");
  }
  return absl::OkStatus();
}

std::string TimeText(absl::Time t) { return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone()); }

absl::Time CrlNextUpdate(const X509_CRL* crl) {
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  return next == nullptr ? absl::InfiniteFuture() : AsnTime(next);
}

}  // namespace coalesce::ossl
