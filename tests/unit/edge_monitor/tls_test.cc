// Mutual TLS on the control plane over real gRPC on loopback, with certificates from throwaway CAs made by
// edge_monitor/pki (and checked by OpenSSL's own verifier through LoadTls): the good case, then every refusal
// with its reason on the side that sees it.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "edge_monitor/edge_agent_client.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/pki.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "edge_monitor/tls.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/temp_dir.h"

namespace coalesce {
namespace {

using Catch::Contains;

struct Pki {
  Pki() {
    auto made = CreateCa("test CA", Validity::Days(1));
    REQUIRE(made.ok());
    ca = *made;
  }
  PemPair Issue(const std::string& name, const std::string& san, const Validity& v = Validity::Days(1)) const {
    auto issued = IssueNodeCertificate(ca, name, {san}, v);
    REQUIRE(issued.ok());
    return *issued;
  }
  // Material as LoadTls would return it, without LoadTls's checks (to present bad certificates to a peer).
  std::shared_ptr<const TlsMaterial> Material(const PemPair& node) const {
    return std::make_shared<const TlsMaterial>(TlsMaterial{ca.cert_pem, node.cert_pem, node.key_pem, "", {}});
  }
  PemPair ca;
};

std::unique_ptr<EdgeAgentServer> StartAgent(const ControlPlaneSecurity& security,
                                            const std::string& listen = "127.0.0.1:0") {
  EdgeAgentService::Options options;
  options.capacity = EdgeCapacity{2, 256ull << 20};
  auto server = EdgeAgentServer::Start(listen, options, std::make_unique<ProcessVmRuntimeFactory>(), security);
  REQUIRE(server.ok());
  return *std::move(server);
}

absl::StatusOr<std::unique_ptr<EdgeAgentClient>> Connect(const std::string& address,
                                                         std::shared_ptr<const TlsMaterial> tls) {
  EdgeAgentClientOptions options;
  options.connect_timeout = absl::Seconds(2);
  options.security.tls = std::move(tls);
  return EdgeAgentClient::Connect(address, options);
}

}  // namespace

TEST_CASE("a home with a certificate from the agent's CA is served over mutual TLS") {
  Pki pki;
  auto agent = StartAgent({pki.Material(pki.Issue("edge", "127.0.0.1")), false});
  auto client = Connect(agent->address(), pki.Material(pki.Issue("home", "127.0.0.1")));
  REQUIRE(client.ok());
  auto capacity = (*client)->GetCapacity();
  REQUIRE(capacity.ok());
  CHECK(capacity->total_vcpus() == 2);
}

TEST_CASE("the agent refuses homes without a certificate, from another CA, or expired, and home says why") {
  Pki pki;
  auto agent = StartAgent({pki.Material(pki.Issue("edge", "127.0.0.1")), false});

  SECTION("no certificate") {
    auto client = Connect(agent->address(), nullptr);
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(std::string(client.status().message()), Contains("the agent requires mutual TLS"));
  }
  SECTION("another CA") {
    Pki other;
    // The home trusts the agent's CA (so the agent is verified) but presents a certificate from another CA.
    PemPair foreign = other.Issue("home", "127.0.0.1");
    auto tls = std::make_shared<const TlsMaterial>(TlsMaterial{pki.ca.cert_pem, foreign.cert_pem, foreign.key_pem, "", {}});
    auto client = Connect(agent->address(), tls);
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(std::string(client.status().message()), Contains("the agent refused our certificate"));
  }
  SECTION("expired") {
    const absl::Time now = absl::Now();
    auto client = Connect(agent->address(),
                          pki.Material(pki.Issue("home", "127.0.0.1", {now - absl::Hours(48), now - absl::Hours(24)})));
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(std::string(client.status().message()), Contains("refused our certificate: it has expired"));
  }
}

TEST_CASE("home refuses an agent whose certificate does not name the address it dialed, or speaks no TLS") {
  Pki pki;
  SECTION("wrong name") {
    auto agent = StartAgent({pki.Material(pki.Issue("edge", "10.9.9.9")), false});
    auto client = Connect(agent->address(), pki.Material(pki.Issue("home", "127.0.0.1")));
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(std::string(client.status().message()), Contains("the agent's certificate is not trusted"));
  }
  SECTION("plaintext agent") {
    auto agent = StartAgent({});
    auto client = Connect(agent->address(), pki.Material(pki.Issue("home", "127.0.0.1")));
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(std::string(client.status().message()), Contains("the agent does not speak TLS"));
  }
}

TEST_CASE("without TLS only loopback, unless --insecure") {
  EdgeAgentService::Options options;
  options.capacity = EdgeCapacity{1, 64ull << 20};
  auto refused = EdgeAgentServer::Start("0.0.0.0:0", options, std::make_unique<ProcessVmRuntimeFactory>(), {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(refused.status().message()), Contains("--listen 0.0.0.0:0 is not a loopback address"));
  auto allowed = EdgeAgentServer::Start("0.0.0.0:0", options, std::make_unique<ProcessVmRuntimeFactory>(),
                                        {nullptr, /*insecure=*/true});
  CHECK(allowed.ok());

  auto client = Connect("192.0.2.1:7001", nullptr);
  REQUIRE_FALSE(client.ok());
  CHECK_THAT(std::string(client.status().message()), Contains("edge agent 192.0.2.1:7001 is not a loopback address"));
  CHECK(IsLoopbackHost("127.0.0.1"));
  CHECK(IsLoopbackHost("127.8.9.10"));
  CHECK(IsLoopbackHost("::1"));
  CHECK(IsLoopbackHost("localhost"));
  CHECK_FALSE(IsLoopbackHost("128.0.0.1"));
  CHECK_FALSE(IsLoopbackHost("0.0.0.0"));
}

TEST_CASE("LoadTls checks the files and names the one that is wrong") {
  Pki pki, other;
  auto made = TempDir::Create("tls-test");
  REQUIRE(made.ok());
  TempDir dir = *std::move(made);
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = dir.path() + "/" + name;
    REQUIRE(WriteNewFile(path, content, 0600).ok());
    return path;
  };
  const PemPair home = pki.Issue("home", "127.0.0.1");
  const std::string ca = write("ca.pem", pki.ca.cert_pem), cert = write("home.pem", home.cert_pem),
                    key = write("home.key", home.key_pem);

  auto none = LoadTls({});
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());

  auto good = LoadTls({ca, cert, key});
  REQUIRE(good.ok());
  REQUIRE(good->has_value());
  CHECK_THAT((*good)->subject, Contains("CN = home"));

  CHECK_THAT(std::string(LoadTls({ca, cert, ""}).status().message()), Contains("go together"));
  CHECK_THAT(std::string(LoadTls({ca, dir.path() + "/missing.pem", key}).status().message()),
             Contains("--tls-cert " + dir.path() + "/missing.pem: open"));
  CHECK_THAT(std::string(LoadTls({ca, key, key}).status().message()), Contains("no PEM certificate"));
  const std::string other_key = write("other.key", pki.Issue("x", "127.0.0.1").key_pem);
  CHECK_THAT(std::string(LoadTls({ca, cert, other_key}).status().message()), Contains("not the key of the certificate"));
  const std::string other_ca = write("other-ca.pem", other.ca.cert_pem);
  CHECK_THAT(std::string(LoadTls({other_ca, cert, key}).status().message()), Contains("does not chain to --tls-ca"));
  const absl::Time now = absl::Now();
  const PemPair old = pki.Issue("old", "127.0.0.1", {now - absl::Hours(48), now - absl::Hours(24)});
  CHECK_THAT(std::string(LoadTls({ca, write("old.pem", old.cert_pem), write("old.key", old.key_pem)}).status().message()),
             Contains("expired on"));
}

}  // namespace coalesce
