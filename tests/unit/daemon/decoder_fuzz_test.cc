// Hostile bytes never crash or hang the daemon's decoders: random buffers and single-byte mutations of valid
// messages, error bodies and domain XML, with a fixed seed so a failure reproduces. (The same entry points
// take libFuzzer input: each DecodeX is a pure function of a byte span.)
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "hypervisor/daemon/domain_xml.h"
#include "hypervisor/daemon/rpc_message.h"
#include "hypervisor/daemon/xdr_stream.h"

using namespace coalesce::daemon;

namespace {

// Reads a payload as a domain-call argument list would: the decoder must stay sticky and bounded.
void DecodeAsCall(std::span<const uint8_t> payload) {
  XdrDecoder d(payload);
  d.GetString();
  d.GetFixedOpaque<16>();
  d.GetI32();
  d.GetOptionalString();
  d.GetU32();
  d.GetVarOpaque(1 << 20);
  (void)d.Finished();
}

void Feed(const std::vector<uint8_t>& bytes) {
  if (bytes.size() >= kLengthBytes) (void)DecodeLength(std::span<const uint8_t, kLengthBytes>(bytes.data(), 4));
  auto m = DecodeMessage(bytes);
  if (m.ok()) DecodeAsCall(m->payload);
  (void)DecodeError(bytes);
  DecodeAsCall(bytes);
}

}  // namespace

TEST_CASE("random and mutated wire input is refused or decoded, never a crash") {
  std::mt19937 rng(20261204);
  XdrEncoder call;
  call.PutString("vm1");
  const uint8_t uuid[16] = {1, 2, 3};
  call.PutFixedOpaque(uuid);
  call.PutI32(-1);
  call.PutOptionalString(std::string("serial0"));
  call.PutU32(1);
  MessageHeader h{.program = 0x20008086, .version = 1, .procedure = 201};
  std::vector<uint8_t> valid = EncodeMessage(h, call.bytes());
  std::vector<uint8_t> error = EncodeError({kErrNoDomain, kFromRemote, "no such domain"});
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> bytes;
    switch (i % 3) {
      case 0:
        bytes.resize(rng() % 96);
        for (auto& b : bytes) b = static_cast<uint8_t>(rng());
        break;
      case 1:
        bytes.assign(valid.begin() + 4, valid.end());
        bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
        bytes.resize(rng() % (bytes.size() + 1));
        break;
      default:
        bytes = error;
        bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
        break;
    }
    Feed(bytes);
  }
  SUCCEED("20000 inputs");
}

TEST_CASE("mutated domain XML is refused or parsed, never a crash") {
  std::mt19937 rng(42);
  const std::string base =
      "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><vcpu>2</vcpu><os><type>hvm</type>"
      "<kernel>/k</kernel></os><metadata><c:coalescence xmlns:c='https://coalesce.dev/xmlns/domain/1'>"
      "<c:edge address='h:1' vcpus='1'/></c:coalescence></metadata></domain>";
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string xml = base;
    for (int k = 0; k < 1 + i % 4; ++k) xml[rng() % xml.size()] = static_cast<char>(rng() % 128);
    auto d = ParseDomainXml(xml);
    if (d.ok()) {
      ++parsed;
      CHECK(ParseDomainXml(FormatDomainXml(*d), false).ok());  // what it accepts it can write back
    }
  }
  CHECK(parsed > 0);
}
