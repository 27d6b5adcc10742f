// The cost of mutual TLS on the control plane, against plaintext gRPC in the same run, same process, same
// loopback: a new connection to an agent (channel + handshakes: what home pays once per edge at start) and one
// GetCapacity round trip on an established channel (what every later control RPC pays). Certificates come from a
// throwaway CA (edge_monitor/pki). A third run adds what a deployment with revocation pays: certificates read
// from files (gRPC's file-watching providers) and a CRL of 1000 entries checked on both sides of every handshake.
// The DSM data plane is not involved (docs/SECURITY.md).
// The last line printed is one JSON object: the RPC round trip over TLS, baseline plaintext.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "edge_monitor/edge_agent_client.h"
#include "edge_monitor/edge_agent_server.h"
#include "edge_monitor/pki.h"
#include "edge_monitor/process_vm_runtime_factory.h"
#include "edge_monitor/tls.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/small_file.h"
#include "hypervisor/base/temp_dir.h"

using namespace coalesce;

namespace {

constexpr int kConnects = 40;
constexpr int kCalls = 2000;

double MedianUs(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double connect_us;
  double rpc_us;
};

Result Measure(const char* label, const ControlPlaneSecurity& agent_side, const ControlPlaneSecurity& home_side) {
  EdgeAgentService::Options options;
  options.capacity = EdgeCapacity{2, 256ull << 20};
  auto server = EdgeAgentServer::Start("127.0.0.1:0", options, std::make_unique<ProcessVmRuntimeFactory>(), agent_side);
  if (!server.ok()) {
    std::fprintf(stderr, "%s: %s\n", label, server.status().ToString().c_str());
    std::exit(1);
  }
  EdgeAgentClientOptions client_options;
  client_options.security = home_side;
  std::vector<double> connects, calls;
  for (int i = 0; i < kConnects; ++i) {
    const absl::Time t0 = absl::Now();
    auto client = EdgeAgentClient::Connect((*server)->address(), client_options);
    auto cap = client.ok() ? (*client)->GetCapacity() : absl::StatusOr<pb::Capacity>(client.status());
    if (!cap.ok()) {
      std::fprintf(stderr, "%s: %s\n", label, cap.status().ToString().c_str());
      std::exit(1);
    }
    connects.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
  }
  auto client = EdgeAgentClient::Connect((*server)->address(), client_options);
  for (int i = 0; i < kCalls; ++i) {
    const absl::Time t0 = absl::Now();
    if (!(*client)->GetCapacity().ok()) std::exit(1);
    calls.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
    if (i % 500 == 499) std::fprintf(stderr, "%s: %d/%d calls\n", label, i + 1, kCalls);
  }
  Result r{MedianUs(connects), MedianUs(calls)};
  std::printf("%-9s connect + first call median %8.1f us   GetCapacity round trip median %7.1f us\n", label,
              r.connect_us, r.rpc_us);
  return r;
}

}  // namespace

int main() {
  SetLogLevel(LogLevel::kWarning);
  auto ca = CreateCa("bench CA", Validity::Days(1));
  auto edge = ca.ok() ? IssueNodeCertificate(*ca, "edge", {"127.0.0.1"}, Validity::Days(1)) : ca.status();
  auto home = ca.ok() ? IssueNodeCertificate(*ca, "home", {"127.0.0.1"}, Validity::Days(1)) : ca.status();
  if (!edge.ok() || !home.ok()) {
    std::fprintf(stderr, "certificates: %s\n", (edge.ok() ? home.status() : edge.status()).ToString().c_str());
    return 1;
  }
  auto material = [&](const PemPair& node) {
    return std::make_shared<const TlsMaterial>(TlsMaterial{ca->cert_pem, node.cert_pem, node.key_pem, "", {}});
  };
  // Files and a CRL of 1000 other certificates' serials, as `coalesce pki` lays them out.
  auto dir = TempDir::Create("control-plane-bench");
  std::vector<Revocation> revoked;
  for (int i = 0; i < 1000; ++i) revoked.push_back(Revocation{absl::StrFormat("7%031X", i), absl::Now()});
  auto crl = ca.ok() ? CreateCrl(*ca, revoked, absl::Now() + absl::Hours(24)) : ca.status();
  if (!dir.ok() || !crl.ok()) {
    std::fprintf(stderr, "CRL setup: %s\n", (dir.ok() ? crl.status() : dir.status()).ToString().c_str());
    return 1;
  }
  const std::string d = dir->path();
  for (auto [name, content] : {std::pair{"ca.pem", ca->cert_pem}, {"ca.crl", *crl}, {"edge.pem", edge->cert_pem},
                               {"edge.key", edge->key_pem}, {"home.pem", home->cert_pem}, {"home.key", home->key_pem}}) {
    if (absl::Status st = WriteNewFile(d + "/" + name, content, 0600); !st.ok()) return 1;
  }
  auto from_files = [&](const std::string& node) {
    auto loaded = LoadTls(TlsFiles{d + "/ca.pem", d + "/" + node + ".pem", d + "/" + node + ".key", d + "/ca.crl"});
    if (!loaded.ok() || !loaded->has_value()) {
      std::fprintf(stderr, "LoadTls: %s\n", loaded.status().ToString().c_str());
      std::exit(1);
    }
    return std::make_shared<const TlsMaterial>(**loaded);
  };

  const Result plain = Measure("plaintext", {}, {});
  const Result tls = Measure("mTLS", {material(*edge), false}, {material(*home), false});
  const Result revocable = Measure("mTLS+CRL", {from_files("edge"), false}, {from_files("home"), false});
  std::printf("connect ratio %.2f (with files and a 1000-entry CRL: %.2f)\n", tls.connect_us / plain.connect_us,
              revocable.connect_us / plain.connect_us);
  std::printf(
      "{\"name\": \"control_plane_mtls_rpc\", \"value\": %.1f, \"unit\": \"us\", \"baseline\": %.1f, "
      "\"baseline_name\": \"plaintext gRPC, same run\", \"ratio\": %.3f, \"connect_us\": %.1f, "
      "\"connect_baseline_us\": %.1f, \"connect_ratio\": %.3f, \"crl_connect_us\": %.1f, "
      "\"crl_rpc_us\": %.1f, \"crl_connect_over_mtls\": %.3f}\n",
      tls.rpc_us, plain.rpc_us, tls.rpc_us / plain.rpc_us, tls.connect_us, plain.connect_us,
      tls.connect_us / plain.connect_us, revocable.connect_us, revocable.rpc_us, revocable.connect_us / tls.connect_us);
  return 0;
}
