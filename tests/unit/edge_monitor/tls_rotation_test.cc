// Certificates that change while nodes run, over real gRPC on loopback with files on disk: a revocation list
// (made by edge_monitor/pki, checked by OpenSSL's verifier) that refuses a revoked home at the agent and a revoked
// agent at the home, written again at run time and in force on the next connection; and an agent certificate
// renewed in place, presented to new connections without a restart (seen by an OpenSSL handshake of the test's
// own, independent of gRPC).
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "edge_monitor/edge_agent_client.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/openssl_util.h"
#include "edge_monitor/pki.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "edge_monitor/tls.h"
#include "edge_monitor/tls_revocation.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/temp_dir.h"

namespace coalesce {
namespace {

using Catch::Contains;

// A CA and its files in a temporary directory, as `coalesce pki` lays them out.
struct PkiDir {
  PkiDir() {
    auto made_dir = TempDir::Create("tls-rotation-test");
    REQUIRE(made_dir.ok());
    dir = std::make_unique<TempDir>(*std::move(made_dir));
    auto made = CreateCa("rotation CA", Validity::Days(1));
    REQUIRE(made.ok());
    ca = *made;
    REQUIRE(ReplaceFile(Path("ca.pem"), ca.cert_pem, 0644).ok());
    WriteCrl({});
  }
  std::string Path(const std::string& name) const { return dir->path() + "/" + name; }
  // NODE.pem and NODE.key, replaced in place when they exist.
  std::string Issue(const std::string& node, const std::string& common_name,
                    const std::string& san = "127.0.0.1") const {
    auto issued = IssueNodeCertificate(ca, common_name, {san}, Validity::Days(1));
    REQUIRE(issued.ok());
    REQUIRE(ReplaceFile(Path(node + ".key"), issued->key_pem, 0600).ok());
    REQUIRE(ReplaceFile(Path(node + ".pem"), issued->cert_pem, 0644).ok());
    auto serial = CertificateSerial(issued->cert_pem);
    REQUIRE(serial.ok());
    return *serial;
  }
  void WriteCrl(const std::vector<Revocation>& revoked, absl::Time next_update = absl::Now() + absl::Hours(24)) const {
    auto crl = CreateCrl(ca, revoked, next_update);
    REQUIRE(crl.ok());
    REQUIRE(ReplaceFile(Path("ca.crl"), *crl, 0644).ok());
  }
  TlsFiles Files(const std::string& node, bool with_crl) const {
    return TlsFiles{Path("ca.pem"), Path(node + ".pem"), Path(node + ".key"), with_crl ? Path("ca.crl") : ""};
  }
  std::shared_ptr<const TlsMaterial> Load(const std::string& node, bool with_crl) const {
    auto loaded = LoadTls(Files(node, with_crl));
    REQUIRE(loaded.ok());
    REQUIRE(loaded->has_value());
    return std::make_shared<const TlsMaterial>(**loaded);
  }
  std::unique_ptr<TempDir> dir;
  PemPair ca;
};

std::unique_ptr<EdgeAgentServer> StartAgent(std::shared_ptr<const TlsMaterial> tls) {
  EdgeAgentService::Options options;
  options.capacity = EdgeCapacity{2, 256ull << 20};
  auto server = EdgeAgentServer::Start("127.0.0.1:0", options, std::make_unique<ProcessVmRuntimeFactory>(),
                                       ControlPlaneSecurity{std::move(tls), false});
  REQUIRE(server.ok());
  return *std::move(server);
}

absl::Status Reach(const std::string& address, std::shared_ptr<const TlsMaterial> tls) {
  EdgeAgentClientOptions options;
  options.connect_timeout = absl::Seconds(3);
  options.security.tls = std::move(tls);
  auto client = EdgeAgentClient::Connect(address, options);
  if (!client.ok()) return client.status();
  return (*client)->GetCapacity().status();
}

// The subject of the certificate the server at `address` presents to a new connection ("" if none).
std::string PresentedSubject(const std::string& address) {
  ossl::Ctx ctx(SSL_CTX_new(TLS_client_method()));
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  ossl::Bio bio(BIO_new_connect(address.c_str()));
  REQUIRE(bio);
  if (BIO_do_connect(bio.get()) != 1) return "";
  ossl::Ssl ssl(SSL_new(ctx.get()));
  SSL_set_bio(ssl.get(), bio.get(), bio.get());
  bio.release();  // owned by ssl now
  SSL_connect(ssl.get());  // the server may refuse us afterwards (no client certificate); its certificate is in
  ossl::X509Ptr peer(SSL_get1_peer_certificate(ssl.get()));
  ERR_clear_error();
  return peer ? ossl::SubjectLine(peer.get()) : "";
}

}  // namespace

TEST_CASE("a CRL refuses a revoked home at the agent, and a CRL written at run time applies to the next connection") {
  PkiDir pki;
  pki.Issue("edge", "edge");
  const std::string home_serial = pki.Issue("home", "home");
  pki.Issue("other", "other-home");
  auto agent_tls = pki.Load("edge", /*with_crl=*/true);
  auto agent = StartAgent(agent_tls);
  auto home = pki.Load("home", false);
  REQUIRE(Reach(agent->address(), home).ok());

  pki.WriteCrl({Revocation{home_serial, absl::Now()}});
  auto listed = ReadCrl(pki.ca.cert_pem, *ReadSmallFile(pki.Path("ca.crl"), 1 << 20, "CRL"));
  REQUIRE(listed.ok());
  REQUIRE(listed->size() == 1);
  CHECK((*listed)[0].serial_hex == home_serial);

  absl::Status refused = Reach(agent->address(), home);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(std::string(refused.message()), Contains("the agent refused our certificate"));
  CHECK(agent_tls->revocation->refused() >= 1);
  CHECK(Reach(agent->address(), pki.Load("other", false)).ok());  // only that certificate

  // A replacement that is not the CA's is refused and the list read before stays in force.
  PkiDir stranger;
  REQUIRE(ReplaceFile(pki.Path("ca.crl"), *ReadSmallFile(stranger.Path("ca.crl"), 1 << 20, "CRL"), 0644).ok());
  CHECK_FALSE(Reach(agent->address(), home).ok());
}

TEST_CASE("home refuses a revoked agent and says it is revoked") {
  PkiDir pki;
  const std::string edge_serial = pki.Issue("edge", "edge");
  pki.Issue("home", "home");
  auto agent = StartAgent(pki.Load("edge", false));
  auto home = pki.Load("home", true);
  REQUIRE(Reach(agent->address(), home).ok());
  pki.WriteCrl({Revocation{edge_serial, absl::Now()}});
  absl::Status refused = Reach(agent->address(), home);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(std::string(refused.message()), Contains("certificate revoked"));
  CHECK(home->revocation->refused() >= 1);
}

TEST_CASE("with a CRL, home still refuses an agent whose certificate does not name the address it dialed") {
  // The revocation verifier takes the place of gRPC's default one; the name check must not go with it.
  PkiDir pki;
  pki.Issue("edge", "edge", "10.9.9.9");
  pki.Issue("home", "home");
  auto agent = StartAgent(pki.Load("edge", false));
  CHECK_FALSE(Reach(agent->address(), pki.Load("home", true)).ok());
  CHECK_FALSE(Reach(agent->address(), pki.Load("home", false)).ok());
}

TEST_CASE("LoadTls with a CRL: refused when it revokes this node, is another CA's, or has expired") {
  PkiDir pki, other;
  const std::string serial = pki.Issue("home", "home");
  CHECK(LoadTls(pki.Files("home", true)).ok());
  TlsFiles crl_only;
  crl_only.crl = pki.Path("ca.crl");
  CHECK_THAT(std::string(LoadTls(crl_only).status().message()), Contains("--tls-crl needs --tls-ca"));

  TlsFiles foreign = pki.Files("home", true);
  foreign.crl = other.Path("ca.crl");
  CHECK_THAT(std::string(LoadTls(foreign).status().message()), Contains("not from --tls-ca"));

  pki.WriteCrl({}, absl::Now() - absl::Hours(1));
  CHECK_THAT(std::string(LoadTls(pki.Files("home", true)).status().message()), Contains("expired on"));

  pki.WriteCrl({Revocation{serial, absl::Now()}});
  const std::string message(LoadTls(pki.Files("home", true)).status().message());
  CHECK_THAT(message, Contains("--tls-cert " + pki.Path("home.pem")));
  CHECK_THAT(message, Contains("certificate revoked"));
}

TEST_CASE("an agent certificate renewed in place is presented to new connections without a restart") {
  PkiDir pki;
  pki.Issue("edge", "edge-first");
  pki.Issue("home", "home");
  auto agent = StartAgent(pki.Load("edge", false));
  auto home = pki.Load("home", false);
  CHECK_THAT(PresentedSubject(agent->address()), Contains("CN = edge-first"));
  REQUIRE(Reach(agent->address(), home).ok());

  pki.Issue("edge", "edge-renewed");
  std::string presented;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTlsReloadSeconds * 4 + 10);
  while (std::chrono::steady_clock::now() < deadline) {
    presented = PresentedSubject(agent->address());
    if (presented.find("edge-renewed") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  CHECK_THAT(presented, Contains("CN = edge-renewed"));
  CHECK(Reach(agent->address(), home).ok());  // and the home accepts it: same CA, names the address
}

}  // namespace coalesce
