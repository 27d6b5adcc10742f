#include "edge_monitor/tls_revocation.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/status_macros.h"

namespace coalesce {
namespace {

constexpr size_t kMaxPemBytes = 4 << 20;  // a CRL of tens of thousands of entries


void FreeStack(STACK_OF(X509) * stack) { sk_X509_free(stack); }

struct Parsed {
  ossl::Store store;
  int64_t entries = 0;
};

// Both files parsed and checked into a store that checks the leaf's revocation (X509_V_FLAG_CRL_CHECK).
absl::StatusOr<Parsed> ReadStore(const std::string& crl_path, const std::string& ca_path) {
  ASSIGN_OR_RETURN(std::string ca_pem, ReadSmallFile(ca_path, kMaxPemBytes, "--tls-ca"));
  ASSIGN_OR_RETURN(std::string crl_pem, ReadSmallFile(crl_path, kMaxPemBytes, "--tls-crl"));
  ASSIGN_OR_RETURN(auto cas, ossl::ParseCertificates(ca_pem, absl::StrCat("--tls-ca ", ca_path)));
  ASSIGN_OR_RETURN(auto crls, ossl::ParseCrls(crl_pem, absl::StrCat("--tls-crl ", crl_path)));
  Parsed out;
  out.store.reset(X509_STORE_new());
  if (!out.store) return absl::InternalError("X509_STORE_new: " + ossl::TakeErrors());
  for (const auto& ca : cas) X509_STORE_add_cert(out.store.get(), ca.get());
  const absl::Time now = absl::Now();
  for (const auto& crl : crls) {
    absl::Status signed_by = absl::NotFoundError("no CA");
    for (const auto& ca : cas) {
      signed_by = ossl::CheckCrlSignedBy(crl.get(), ca.get());
      if (signed_by.ok()) break;
    }
    if (!signed_by.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-crl ", crl_path, ": not from --tls-ca ", ca_path, ": ", signed_by.message()));
    }
    if (ossl::CrlNextUpdate(crl.get()) < now) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-crl ", crl_path, ": expired on ",
                                                     ossl::TimeText(ossl::CrlNextUpdate(crl.get())),
                                                     " (its issuer promised a newer one by then: `coalesce pki crl`)"));
    }
    X509_STORE_add_crl(out.store.get(), crl.get());
    out.entries += sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get()));
  }
  X509_STORE_set_flags(out.store.get(), X509_V_FLAG_CRL_CHECK);
  return out;
}

class RevocationVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RevocationVerifier(std::shared_ptr<RevocationList> list) : list_(std::move(list)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request, std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    // The peer's own certificate; what gRPC calls the full chain (on the server, the chain it verified, CA
    // first) may add intermediates.
    const grpc::string_ref leaf = request->peer_cert(), chain = request->peer_cert_full_chain();
    absl::Status checked =
        list_->Check(std::string_view(leaf.data(), leaf.size()), std::string_view(chain.data(), chain.size()));
    if (checked.ok()) {
      *sync_status = grpc::Status::OK;
    } else {
      LOG_WARN("control plane TLS: refused a peer: %s", checked.message());
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(checked.message()));
    }
    return true;  // done here, synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<RevocationList> list_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<RevocationList>> RevocationList::Load(const std::string& crl_path,
                                                                      const std::string& ca_path) {
  std::shared_ptr<RevocationList> list(new RevocationList(crl_path, ca_path));
  absl::MutexLock lock(&list->mu_);
  RETURN_IF_ERROR(list->ReloadIfChanged());
  return list;
}

absl::Status RevocationList::ReloadIfChanged() {
  const FileStamp crl = StampOf(crl_path_), ca = StampOf(ca_path_);
  if (store_ && crl == crl_stamp_ && ca == ca_stamp_) return absl::OkStatus();
  absl::StatusOr<Parsed> parsed = ReadStore(crl_path_, ca_path_);
  if (!parsed.ok()) {
    if (!store_) return parsed.status();
    // Said once per change of the files; the last good list stays in force.
    LOG_WARN("control plane TLS: %s; keeping the revocation list read before", parsed.status().message());
  } else {
    if (store_) LOG_INFO("control plane TLS: revocation list %s read again: %d revoked", crl_path_, parsed->entries);
    store_ = std::move(parsed->store);
  }
  crl_stamp_ = crl;
  ca_stamp_ = ca;
  return absl::OkStatus();
}

absl::Status RevocationList::VerifyLocked(X509* leaf, STACK_OF(X509)* untrusted) {
  ossl::StoreCtx ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf, untrusted) != 1) {
    return absl::InternalError("X509_STORE_CTX_init: " + ossl::TakeErrors());
  }
  if (X509_verify_cert(ctx.get()) == 1) return absl::OkStatus();
  ERR_clear_error();
  ++refused_;
  return absl::PermissionDeniedError(absl::StrCat(
      "certificate ", ossl::SubjectLine(leaf), " (serial ", ossl::SerialHex(X509_get0_serialNumber(leaf)), "): ",
      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())), " (--tls-crl ", crl_path_, ")"));
}

absl::Status RevocationList::Check(std::string_view cert_pem, std::string_view chain_pem) {
  ASSIGN_OR_RETURN(auto cert, ossl::ParseCertificates(cert_pem, "the peer's certificate"));
  std::vector<ossl::X509Ptr> chain;
  if (!chain_pem.empty()) {
    ASSIGN_OR_RETURN(chain, ossl::ParseCertificates(chain_pem, "the peer's certificate chain"));
  }
  std::unique_ptr<STACK_OF(X509), ossl::Deleter<FreeStack>> untrusted(sk_X509_new_null());
  for (const auto& c : chain) sk_X509_push(untrusted.get(), c.get());
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(ReloadIfChanged());
  return VerifyLocked(cert[0].get(), untrusted.get());
}

absl::Status RevocationList::CheckOwn(X509* cert) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(ReloadIfChanged());
  return VerifyLocked(cert, nullptr);
}

int64_t RevocationList::refused() const {
  absl::MutexLock lock(&mu_);
  return refused_;
}

std::shared_ptr<grpc::experimental::CertificateVerifier> MakeRevocationVerifier(std::shared_ptr<RevocationList> list) {
  return grpc::experimental::ExternalCertificateVerifier::Create<RevocationVerifier>(std::move(list));
}

}  // namespace coalesce
