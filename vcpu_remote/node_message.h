// The messages nodes of one coalesced VM exchange besides DSM page traffic: forwarded port/MMIO accesses,
// interrupt messages, EOIs, peer introductions and stop notices, probes of the link, and vCPUs moving. They travel as DSM user messages (the data
// plane's connection per node pair) with this fixed little-endian encoding, defined here only.
//
//   byte 0: kNodeMessageVersion   byte 1: NodeMessageType   bytes 2..: the type's fields (below)
//
// Decode() validates lengths and enum values: a malformed message from a peer is an error to log and count,
// never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "hypervisor/irq/apic_message.h"

namespace coalesce::node_msg {

inline constexpr uint8_t kVersion = 4;  // 2: Echo and EchoReply; 3: moving vCPUs; 4: pausing the VM

enum class Type : uint8_t {
  kHello = 1,       // remote -> home: my node id and where my data plane listens
  kPeers = 2,       // home -> remote: the other remote nodes to connect to
  kIoRequest = 3,   // remote -> home: a vCPU's PIO/MMIO access outside its own APIC
  kIoReply = 4,     // home -> remote: the read data (or an ack for a write)
  kInterrupt = 5,   // any -> any: an ApicMessage for the receiver's APICs
  kEoi = 6,         // remote -> home: a level-triggered vector was EOIed (for the IOAPIC)
  kStop = 7,        // any -> any: the VM stops, with the exit status and reason
  kMeshReady = 8,   // remote -> home: connected to every peer named in kPeers; its vCPUs may start
  kEcho = 9,        // home -> remote: a round-trip probe (the link's latency, for the guest's NUMA distances)
  kEchoReply = 10,  // remote -> home: the probe's token, sent back at once
  kVcpuEvict = 11,  // home -> remote: send this vCPU home (docs/COALESCENCE.md "Moving a vCPU")
  kVcpuDetached = 12,        // remote -> home: its APIC takes no more interrupts here (the state follows)
  kVcpuMigrate = 13,         // any -> any: a vCPU's whole state; the receiver runs it from now on
  kVcpuArrived = 14,         // remote -> home: the vCPU sent here runs here
  kDirectedInterrupt = 15,   // home -> remote: an ApicMessage for one APIC only (it moved while in flight)
  kLeaving = 16,             // remote -> home: this node goes (its agent stops), take its vCPUs;
                             // home -> remote: you have no vCPUs left, hand your pages back and go
  kPause = 17,               // home -> remote: hold (or release) every vCPU running here at its pause gate
  kPauseDone = 18,           // remote -> home: the answer to kPause
};

enum class IoKind : uint8_t { kPioRead = 0, kPioWrite = 1, kMmioRead = 2, kMmioWrite = 3 };

struct Hello {
  uint16_t node_id;
  uint16_t dsm_port;
  std::string host;
};
struct PeerInfo {
  uint16_t node_id;
  uint16_t dsm_port;
  std::string host;
};
struct Peers {
  std::vector<PeerInfo> peers;
};
struct IoRequest {
  uint64_t request_id;
  uint32_t vcpu_id;
  IoKind kind;
  uint64_t address;
  uint8_t size;                // 1, 2, 4 or 8
  std::vector<uint8_t> data;   // the bytes written (writes); empty for reads
};
struct IoReply {
  uint64_t request_id;
  std::vector<uint8_t> data;   // the bytes read (reads); empty for writes
};
struct Interrupt {
  ApicMessage message;
};
struct Eoi {
  uint8_t vector;
};
struct Stop {
  int32_t exit_status;
  std::string reason;
};

struct MeshReady {
  uint16_t node_id;
};

struct Echo {
  uint64_t token;
};
struct EchoReply {
  uint64_t token;
};

// Where a moving vCPU's thread was (Vcpu::State without the states a thread is never parked in).
enum class VcpuRunState : uint8_t { kWaitForSipi = 1, kRunning = 2, kHalted = 3 };

struct VcpuEvict {
  uint32_t vcpu_id;
};
struct VcpuDetached {
  uint32_t vcpu_id;
};
struct VcpuMigrate {
  uint32_t vcpu_id;
  VcpuRunState run_state;
  bool halted_with_interrupts;
  std::vector<uint8_t> state;  // EncodeVcpuState (hypervisor/vcpu/vcpu_state.h); at most kMaxVcpuState bytes
};
inline constexpr size_t kMaxVcpuState = 64 * 1024;
struct VcpuArrived {
  uint32_t vcpu_id;
};
struct DirectedInterrupt {
  uint32_t apic_id;
  ApicMessage message;
};
struct Leaving {
  std::string reason;
};
// The guest is paused (`coalesce ctl suspend`, virsh suspend) or resumed: docs/COALESCENCE.md "Pausing the guest".
struct Pause {
  uint64_t token;  // echoed in the answer
  bool paused;     // true: hold every vCPU here; false: let them run again
};
struct PauseDone {
  uint64_t token;
  bool paused;        // the state the node is in now
  uint32_t vcpus;     // vCPUs held (pause) or released (resume)
  std::string error;  // empty when done; else why not (a vCPU that did not reach its gate in time)
};

using NodeMessage = std::variant<Hello, Peers, IoRequest, IoReply, Interrupt, Eoi, Stop, MeshReady, Echo, EchoReply,
                                 VcpuEvict, VcpuDetached, VcpuMigrate, VcpuArrived, DirectedInterrupt, Leaving,
                                 Pause, PauseDone>;

std::vector<uint8_t> Encode(const NodeMessage& message);
absl::StatusOr<NodeMessage> Decode(std::span<const uint8_t> bytes);

}  // namespace coalesce::node_msg
