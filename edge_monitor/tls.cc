#include "edge_monitor/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "edge_monitor/openssl_util.h"
#include "edge_monitor/tls_revocation.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/status_macros.h"
#include "hypervisor/base/unique_fd.h"

namespace coalesce {
namespace {

constexpr size_t kMaxPemBytes = 1 << 20;


// Chain check of `cert` against every certificate in `ca_pem`, as a peer will do it.
absl::Status VerifyChain(X509* cert, const std::vector<ossl::X509Ptr>& cas, const std::string& cert_path,
                         const std::string& ca_path) {
  ossl::Store store(X509_STORE_new());
  for (const auto& ca : cas) X509_STORE_add_cert(store.get(), ca.get());
  ossl::StoreCtx ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) != 1) {
    return absl::InternalError("X509_STORE_CTX_init: " + ossl::TakeErrors());
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", cert_path, ": does not chain to --tls-ca ", ca_path, ": ",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  return absl::OkStatus();
}

// Connects with a deadline; -1 and errno on failure.
UniqueFd ConnectWithin(const HostPort& address, absl::Duration timeout, std::string* why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    *why = absl::StrCat("cannot resolve ", address.host, ": ", gai_strerror(rc));
    return UniqueFd();
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  UniqueFd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    *why = absl::StrCat("socket: ", std::strerror(errno));
    return UniqueFd();
  }
  if (::connect(fd.get(), found->ai_addr, found->ai_addrlen) < 0 && errno != EINPROGRESS) {
    *why = absl::StrCat("connect: ", std::strerror(errno));
    return UniqueFd();
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) {
    *why = "connect: no answer in time";
    return UniqueFd();
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    *why = absl::StrCat("connect: ", std::strerror(err));
    return UniqueFd();
  }
  // Blocking from here on, with the same bound on every read and write of the handshake.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  const int64_t us = std::max<int64_t>(absl::ToInt64Microseconds(timeout), 1000);  // 0 would mean "no limit"
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

// OpenSSL's reason for a failed handshake or read, turned into advice.
std::string Explain(const std::string& reason, bool have_tls) {
  if (absl::StrContains(reason, "certificate required")) {
    return have_tls ? "the agent asked for a client certificate and got none"
                    : "the agent requires mutual TLS: give --tls-ca, --tls-cert and --tls-key";
  }
  if (absl::StrContains(reason, "unknown ca")) {
    return "the agent refused our certificate: issued by a CA it does not trust (unknown ca)";
  }
  if (absl::StrContains(reason, "certificate expired")) return "the agent refused our certificate: it has expired";
  if (absl::StrContains(reason, "bad certificate") || absl::StrContains(reason, "certificate unknown")) {
    return absl::StrCat("the agent refused our certificate (", reason, ")");
  }
  if (absl::StrContains(reason, "wrong version number") || absl::StrContains(reason, "packet length too long") ||
      absl::StrContains(reason, "record layer failure") || absl::StrContains(reason, "unexpected eof")) {
    return have_tls ? absl::StrCat("the agent does not speak TLS (started without --tls-ca/--tls-cert/--tls-key?): ",
                                   reason)
                    : "";
  }
  return absl::StrCat("TLS handshake failed: ", reason);
}

// `tls` with the PEM files read again when it came from files (what gRPC serves after a rotation); as it was
// when they cannot be read.
TlsMaterial CurrentMaterial(const TlsMaterial& tls) {
  TlsMaterial now = tls;
  if (tls.files.cert.empty()) return now;
  auto ca = ReadSmallFile(tls.files.ca, kMaxPemBytes, "--tls-ca");
  auto cert = ReadSmallFile(tls.files.cert, kMaxPemBytes, "--tls-cert");
  auto key = ReadSmallFile(tls.files.key, kMaxPemBytes, "--tls-key");
  if (ca.ok() && cert.ok() && key.ok()) {
    now.ca_pem = *std::move(ca);
    now.cert_pem = *std::move(cert);
    now.key_pem = *std::move(key);
  }
  return now;
}

// Files are watched (rotation without restart); material made in memory (tests) is served as it is.
std::shared_ptr<grpc::experimental::CertificateProviderInterface> CertificateProvider(const TlsMaterial& tls) {
  if (!tls.files.cert.empty()) {
    return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(tls.files.key, tls.files.cert,
                                                                                tls.files.ca, kTlsReloadSeconds);
  }
  return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      tls.ca_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{{tls.key_pem, tls.cert_pem}});
}

}  // namespace

absl::StatusOr<std::optional<TlsMaterial>> LoadTls(const TlsFiles& files) {
  if (!files.any()) return std::optional<TlsMaterial>();
  if (files.ca.empty() || files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(files.crl.empty()
                                          ? "--tls-ca, --tls-cert and --tls-key go together: give all three"
                                          : "--tls-crl needs --tls-ca, --tls-cert and --tls-key");
  }
  TlsMaterial m;
  auto ca = ReadSmallFile(files.ca, kMaxPemBytes, "--tls-ca");
  if (!ca.ok()) return absl::InvalidArgumentError(ca.status().message());
  auto cert = ReadSmallFile(files.cert, kMaxPemBytes, "--tls-cert");
  if (!cert.ok()) return absl::InvalidArgumentError(cert.status().message());
  auto key = ReadSmallFile(files.key, kMaxPemBytes, "--tls-key");
  if (!key.ok()) return absl::InvalidArgumentError(key.status().message());

  ASSIGN_OR_RETURN(auto cas, ossl::ParseCertificates(*ca, absl::StrCat("--tls-ca ", files.ca)));
  ASSIGN_OR_RETURN(auto certs, ossl::ParseCertificates(*cert, absl::StrCat("--tls-cert ", files.cert)));
  ASSIGN_OR_RETURN(auto pkey, ossl::ParsePrivateKey(*key, absl::StrCat("--tls-key ", files.key)));
  X509* leaf = certs[0].get();
  if (X509_check_private_key(leaf, pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", files.key, ": not the key of the certificate in --tls-cert ", files.cert));
  }
  const absl::Time now = absl::Now();
  if (ossl::NotAfter(leaf) < now) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", files.cert, ": expired on ", ossl::TimeText(ossl::NotAfter(leaf))));
  }
  if (ossl::NotBefore(leaf) > now) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", files.cert, ": not valid before ", ossl::TimeText(ossl::NotBefore(leaf))));
  }
  if (absl::Status st = VerifyChain(leaf, cas, files.cert, files.ca); !st.ok()) return st;
  if (!files.crl.empty()) {
    auto revocation = RevocationList::Load(files.crl, files.ca);
    if (!revocation.ok()) return absl::InvalidArgumentError(revocation.status().message());
    if (absl::Status own = (*revocation)->CheckOwn(leaf); !own.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", files.cert, ": ", own.message()));
    }
    m.revocation = *std::move(revocation);
  }
  m.files = files;
  m.ca_pem = *std::move(ca);
  m.cert_pem = *std::move(cert);
  m.key_pem = *std::move(key);
  m.subject = ossl::SubjectLine(leaf);
  m.not_after = ossl::NotAfter(leaf);
  return std::optional<TlsMaterial>(std::move(m));
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsMaterial* tls) {
  if (tls == nullptr) return grpc::InsecureServerCredentials();
  grpc::experimental::TlsServerCredentialsOptions options(CertificateProvider(*tls));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (tls->revocation) options.set_certificate_verifier(MakeRevocationVerifier(tls->revocation));
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MakeChannelCredentials(const TlsMaterial* tls) {
  if (tls == nullptr) return grpc::InsecureChannelCredentials();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(CertificateProvider(*tls));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  if (tls->revocation) options.set_certificate_verifier(MakeRevocationVerifier(tls->revocation));
  return grpc::experimental::TlsCredentials(options);
}

TlsRotationWatch::TlsRotationWatch(TlsFiles files)
    : files_(std::move(files)), ca_(StampOf(files_.ca)), cert_(StampOf(files_.cert)), key_(StampOf(files_.key)) {}

void TlsRotationWatch::Poll() {
  const FileStamp ca = StampOf(files_.ca), cert = StampOf(files_.cert), key = StampOf(files_.key);
  if (ca == ca_ && cert == cert_ && key == key_) return;
  ca_ = ca;
  cert_ = cert;
  key_ = key;
  TlsFiles certificate_only = files_;
  certificate_only.crl.clear();  // the CRL has its own reload (tls_revocation.h)
  auto loaded = LoadTls(certificate_only);
  if (loaded.ok() && loaded->has_value()) {
    LOG_INFO("control plane TLS: certificate files changed: new connections get %s, valid until %s",
             (*loaded)->subject, ossl::TimeText((*loaded)->not_after));
  } else {
    LOG_WARN("control plane TLS: certificate files changed, but %s (new handshakes may fail until they are fixed)",
             loaded.ok() ? "they are gone" : loaded.status().message());
  }
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  const std::string h(host);
  return ::inet_pton(AF_INET, h.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

absl::Status CheckPlaintextAllowed(const HostPort& address, bool tls, bool insecure, std::string_view what) {
  if (tls || insecure || IsLoopbackHost(address.host)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      std::string(what), " ", address.ToString(),
      " is not a loopback address: give --tls-ca, --tls-cert and --tls-key (mutual TLS), or --insecure to "
      "send the control plane in clear (docs/SECURITY.md)"));
}

std::string DiagnoseTlsConnect(const HostPort& address, const TlsMaterial* tls, absl::Duration timeout) {
  std::string why;
  UniqueFd fd = ConnectWithin(address, timeout, &why);
  if (!fd.valid()) return why;
  ossl::Ctx ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return "SSL_CTX_new: " + ossl::TakeErrors();
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  static const unsigned char kAlpn[] = {2, 'h', '2'};  // gRPC's servers insist on HTTP/2
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  std::optional<TlsMaterial> now;  // the files as they are now: they may have rotated since start
  if (tls != nullptr) {
    now = CurrentMaterial(*tls);
    tls = &*now;
    auto cas = ossl::ParseCertificates(tls->ca_pem, "CA");
    auto certs = ossl::ParseCertificates(tls->cert_pem, "certificate");
    auto key = ossl::ParsePrivateKey(tls->key_pem, "key");
    if (!cas.ok() || !certs.ok() || !key.ok()) return "cannot reload our own TLS material";
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    for (const auto& ca : *cas) X509_STORE_add_cert(store, ca.get());
    if (!tls->files.crl.empty()) {
      auto crl = ReadSmallFile(tls->files.crl, kMaxPemBytes, "--tls-crl");
      auto crls = crl.ok() ? ossl::ParseCrls(*crl, "CRL") : crl.status();
      if (crls.ok()) {
        for (const auto& c : *crls) X509_STORE_add_crl(store, c.get());
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
      }
    }
    SSL_CTX_use_certificate(ctx.get(), (*certs)[0].get());
    SSL_CTX_use_PrivateKey(ctx.get(), key->get());
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  ossl::Ssl ssl(SSL_new(ctx.get()));
  if (!ssl) return "SSL_new: " + ossl::TakeErrors();
  if (tls != nullptr) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
    if (X509_VERIFY_PARAM_set1_ip_asc(param, address.host.c_str()) != 1) {
      ERR_clear_error();
      X509_VERIFY_PARAM_set1_host(param, address.host.c_str(), 0);
    }
  }
  SSL_set_fd(ssl.get(), fd.get());
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    const long verify = SSL_get_verify_result(ssl.get());
    if (tls != nullptr && verify != X509_V_OK) {
      return absl::StrCat("the agent's certificate is not trusted: ", X509_verify_cert_error_string(verify));
    }
    const std::string reason = ossl::TakeErrors();
    return Explain(reason.empty() ? "connection closed during the handshake" : reason, tls != nullptr);
  }
  // TLS 1.3: the server judges our certificate after our side of the handshake is done; its verdict (an alert)
  // arrives with the first read. An HTTP/2 SETTINGS frame instead means it accepted us.
  char byte;
  if (SSL_read(ssl.get(), &byte, 1) <= 0) {
    const std::string reason = ossl::TakeErrors();
    if (!reason.empty() && !absl::StrContains(reason, "unexpected eof")) return Explain(reason, tls != nullptr);
    // gRPC's TLS closes without an alert when it refuses a client certificate.
    if (tls == nullptr) return "the agent requires mutual TLS: give --tls-ca, --tls-cert and --tls-key";
    std::string ours;
    if (auto certs = ossl::ParseCertificates(tls->cert_pem, "certificate"); certs.ok()) {
      X509* leaf = (*certs)[0].get();
      if (ossl::NotAfter(leaf) < absl::Now()) {
        ours = absl::StrCat(": it has expired (on ", ossl::TimeText(ossl::NotAfter(leaf)), ")");
      }
    }
    return ours.empty() ? "the agent refused our certificate (it closed the connection after the handshake): "
                          "issued by a CA it does not trust, expired, or revoked (its --tls-crl)"
                        : absl::StrCat("the agent refused our certificate", ours);
  }
  return "";
}

}  // namespace coalesce
