// RAII handles and small helpers over OpenSSL for tls.cc and pki.cc: owned pointers and PEM to and from memory.
// The deleter and the error queue as text come from hypervisor/base/openssl_errors.h.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hypervisor/base/openssl_errors.h"

namespace coalesce::ossl {

using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtx = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using Ctx = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using Ssl = std::unique_ptr<SSL, Deleter<SSL_free>>;
using Crl = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;

// Every certificate in `pem`, in order; InvalidArgument if there is none.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(std::string_view pem, std::string_view what);
absl::StatusOr<Key> ParsePrivateKey(std::string_view pem, std::string_view what);
// Every certificate revocation list in `pem`; InvalidArgument if there is none.
absl::StatusOr<std::vector<Crl>> ParseCrls(std::string_view pem, std::string_view what);

absl::StatusOr<std::string> CertificateToPem(X509* cert);
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);
absl::StatusOr<std::string> CrlToPem(X509_CRL* crl);

// The subject as one line ("CN=edge1") and the validity bounds.
std::string SubjectLine(X509* cert);
absl::Time NotBefore(X509* cert);
absl::Time NotAfter(X509* cert);
// The serial number in hex ("1F03..."), as `openssl x509 -serial` prints it.
std::string SerialHex(const ASN1_INTEGER* serial);
// OK when `ca` issued and signed `crl`; InvalidArgument saying which of the two it did not.
absl::Status CheckCrlSignedBy(X509_CRL* crl, X509* ca);
std::string CrlIssuerLine(X509_CRL* crl);
// When a CRL's issuer promises the next one (InfiniteFuture when it names none).
absl::Time CrlNextUpdate(const X509_CRL* crl);
// A certificate or CRL date as messages print it ("2026-12-06 15:23:05 UTC").
std::string TimeText(absl::Time t);

}  // namespace coalesce::ossl
