// Writes the seed corpus (corpus/<target>/seed-*) from the project's own encoders and example files, so seeds
// start from valid input and follow the formats when they change: `build/tests/fuzz/fuzz_seed_writer tests/fuzz/corpus`
// from the repository root. Inputs found by fuzzing are added next to these by hand (crash-* files, kept forever).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "devmodel/vhost_user/vhost_user_message.h"
#include "hypervisor/daemon/rpc_message.h"
#include "hypervisor/daemon/xdr_stream.h"
#include "vcpu_remote/node_message.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path g_root;

void Write(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / ("seed-" + name), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

Bytes Prefixed(uint8_t selector, const std::string& text) {
  Bytes b{selector};
  b.insert(b.end(), text.begin(), text.end());
  return b;
}

Bytes FileBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s (run from the repository root)\n", path.c_str());
    std::exit(1);
  }
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void NodeMessages() {
  namespace nm = coalesce::node_msg;
  Write("node_message", "hello", nm::Encode(nm::Hello{.node_id = 1, .dsm_port = 7001, .host = "10.0.0.2"}));
  Write("node_message", "peers",
        nm::Encode(nm::Peers{.peers = {{2, 7002, "10.0.0.3"}, {3, 7003, "fe80::1"}}}));
  Write("node_message", "io_write",
        nm::Encode(nm::IoRequest{.request_id = 7, .vcpu_id = 1, .kind = nm::IoKind::kPioWrite, .address = 0x3f8,
                                 .size = 1, .data = {'A'}}));
  Write("node_message", "io_read",
        nm::Encode(nm::IoRequest{.request_id = 8, .vcpu_id = 2, .kind = nm::IoKind::kMmioRead,
                                 .address = 0xfec00010, .size = 4, .data = {}}));
  Write("node_message", "io_reply", nm::Encode(nm::IoReply{.request_id = 8, .data = {1, 2, 3, 4}}));
  coalesce::ApicMessage ipi{.vector = 0xfd, .destination = 1, .source_apic_id = 0};
  Write("node_message", "interrupt", nm::Encode(nm::Interrupt{.message = ipi}));
  Write("node_message", "eoi", nm::Encode(nm::Eoi{.vector = 0x21}));
  Write("node_message", "stop", nm::Encode(nm::Stop{.exit_status = 3, .reason = "guest triple fault"}));
  Write("node_message", "mesh_ready", nm::Encode(nm::MeshReady{.node_id = 2}));
  Write("node_message", "echo", nm::Encode(nm::Echo{.token = 0x1122334455667788ULL}));
  Write("node_message", "echo_reply", nm::Encode(nm::EchoReply{.token = 9}));
  Write("node_message", "vcpu_evict", nm::Encode(nm::VcpuEvict{.vcpu_id = 1}));
  Write("node_message", "vcpu_detached", nm::Encode(nm::VcpuDetached{.vcpu_id = 1}));
  Write("node_message", "vcpu_migrate",
        nm::Encode(nm::VcpuMigrate{.vcpu_id = 1, .run_state = nm::VcpuRunState::kHalted,
                                   .halted_with_interrupts = true, .state = {1, 0, 0, 0, 2}}));
  Write("node_message", "vcpu_arrived", nm::Encode(nm::VcpuArrived{.vcpu_id = 1}));
  Write("node_message", "directed_interrupt", nm::Encode(nm::DirectedInterrupt{.apic_id = 1, .message = ipi}));
  Write("node_message", "leaving", nm::Encode(nm::Leaving{.reason = "agent stopping"}));
  Write("node_message", "pause", nm::Encode(nm::Pause{.token = 5, .paused = true}));
  Write("node_message", "pause_done",
        nm::Encode(nm::PauseDone{.token = 5, .paused = true, .vcpus = 2, .error = ""}));
  Write("node_message", "pause_done_error",
        nm::Encode(nm::PauseDone{.token = 6, .paused = false, .vcpus = 0, .error = "vCPU 3 did not stop in 5 s"}));
}

void Libvirt() {
  using namespace coalesce::daemon;
  XdrEncoder call;
  call.PutString("vm1");
  const uint8_t uuid[16] = {1, 2, 3};
  call.PutFixedOpaque(uuid);
  call.PutI32(-1);
  MessageHeader h{.program = 0x20008086, .version = 1, .procedure = 23};
  Bytes m = EncodeMessage(h, call.bytes());
  Write("libvirt_rpc", "call", Bytes(m.begin() + kLengthBytes, m.end()));
  Write("libvirt_rpc", "error", EncodeError({kErrNoDomain, kFromRemote, "no such domain"}));
  MessageHeader open{.program = 0x20008086, .version = 1, .procedure = 1};
  XdrEncoder open_args;
  open_args.PutOptionalString(std::string("coalesce:///system"));
  open_args.PutU32(0);
  Bytes o = EncodeMessage(open, open_args.bytes());
  Write("libvirt_rpc", "open", Bytes(o.begin() + kLengthBytes, o.end()));
}

void VhostUser() {
  using namespace coalesce::vhost_user;
  // Replies: the selector byte names the request the reply answers, then header and payload.
  auto reply = [](Request r, Bytes message) {
    message[4] |= 0x4;  // the reply flag
    Bytes b{static_cast<uint8_t>(r)};
    b.insert(b.end(), message.begin(), message.end());
    return b;
  };
  Write("vhost_user", "features", reply(Request::kGetFeatures, EncodeU64(Request::kGetFeatures, 0x150000000)));
  Write("vhost_user", "vring_base",
        reply(Request::kGetVringBase, EncodeVringState(Request::kGetVringBase, 0, 17)));
  Write("vhost_user", "config", reply(Request::kGetConfig, EncodeGetConfig(0, 60)));
}

void ExampleFiles() {
  Write("profile", "home2_edge2", Prefixed(0, [] {
          Bytes b = FileBytes("examples/home2_edge2.textproto");
          return std::string(b.begin(), b.end());
        }()));
  Write("profile", "home_only", Prefixed(0, [] {
          Bytes b = FileBytes("examples/home_only.textproto");
          return std::string(b.begin(), b.end());
        }()));
  Write("profile", "home1_edges3", Prefixed(1, [] {
          Bytes b = FileBytes("examples/home1_edges3.json");
          return std::string(b.begin(), b.end());
        }()));
  Write("domain_xml", "demo", FileBytes("examples/demo-domain.xml"));
}

void CliValues() {
  Write("cli_values", "size", Prefixed(0, "512MiB"));
  Write("cli_values", "vcpus", Prefixed(1, "0,2-5,7"));
  Write("cli_values", "host_port", Prefixed(2, "[::1]:7001"));
  Write("cli_values", "edge", Prefixed(3, "127.0.0.1:7100,vcpus=2-3"));
  Write("cli_values", "disk", Prefixed(4, "/var/lib/vm.qcow2,format=qcow2,readonly=on,shadow=on"));
  Write("cli_values", "net", Prefixed(5, "tap=tap0,mac=52:54:00:12:34:56"));
  Write("cli_values", "guest_ranges", Prefixed(6, "0x2000000+2M,0x1000000+64K"));
}

void Instructions() {
  Write("instruction_decoder", "cmpxchg16b", {0xf0, 0x48, 0x0f, 0xc7, 0x0e});
  Write("instruction_decoder", "movdqa", {0x66, 0x0f, 0x6f, 0x44, 0x24, 0x10});
  Write("instruction_decoder", "xsave", {0x48, 0x0f, 0xae, 0x27});
  Write("instruction_decoder", "vex_mov", {0xc5, 0xfa, 0x6f, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00});
  Write("instruction_decoder", "add_rip", {0x48, 0x03, 0x05, 0x10, 0x00, 0x00, 0x00});
}

// A queue of 8 with two chains: a readable 16-byte header then a writable 512-byte buffer, and a lone
// writable buffer. Layout as virtqueue_fuzz.cc reads it: byte 0 the size selector, then guest RAM from 0x1000.
void Virtqueue() {
  Bytes b(1 + 0x3000 + 0x20, 0);
  b[0] = 3;  // 1 << 3 = 8 entries
  auto put = [&](uint64_t gpa, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b[1 + (gpa - 0x1000) + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  auto desc = [&](int i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    const uint64_t d = 0x1000 + 16 * i;
    put(d, addr, 8), put(d + 8, len, 4), put(d + 12, flags, 2), put(d + 14, next, 2);
  };
  desc(0, 0x8000, 16, 1, 1);   // NEXT
  desc(1, 0x9000, 512, 2, 0);  // WRITE
  desc(2, 0xa000, 64, 2, 0);
  put(0x3000 + 2, 2, 2);  // avail idx
  put(0x3000 + 4, 0, 2), put(0x3000 + 6, 2, 2);
  Write("virtqueue", "two_chains", b);
}

// dsm_frames_fuzz.cc's operations: a selector byte and its arguments.
void DsmFrames() {
  // Home (node 0): node 1 asks to read page 3, then confirms; node 2 asks to write it.
  Write("dsm_frames", "home_read_write", {0x00, 0x09, 2, 0, 3, 1, 1, 0x09, 9, 0, 3, 1, 1, 0x11, 3, 0, 3, 2, 2});
  // Node 1: faults page 2, home grants it with data, time passes past the timeout.
  Write("dsm_frames", "remote_fault_grant", {0x01, 0x00, 2, 0, 0x0f, 8, 0, 2, 1, 1, 0x06, 200});
  // Raw header bytes: a valid READ_REQ from node 1 to home.
  Bytes raw{0x00, 0x07, 0xa1, 0xc0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1};
  raw.resize(2 + 32, 0);
  Write("dsm_frames", "raw_header", raw);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (run from the repository root)\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  NodeMessages();
  Libvirt();
  VhostUser();
  ExampleFiles();
  CliValues();
  Instructions();
  Virtqueue();
  DsmFrames();
  std::printf("seeds written under %s\n", argv[1]);
  return 0;
}
