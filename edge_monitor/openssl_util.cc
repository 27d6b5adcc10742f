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

std::string SubjectLine(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  return BioText(bio.get());
}

absl::Time NotBefore(X509* cert) { return AsnTime(X509_get0_notBefore(cert)); }
absl::Time NotAfter(X509* cert) { return AsnTime(X509_get0_notAfter(cert)); }

}  // namespace coalesce::ossl
