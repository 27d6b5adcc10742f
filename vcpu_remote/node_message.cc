#include "vcpu_remote/node_message.h"

#include "absl/strings/str_format.h"

namespace coalesce::node_msg {
namespace {

constexpr size_t kMaxString = 4096;
constexpr size_t kMaxPeers = 64;

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(v); }
  void U16(uint16_t v) { Le(v, 2); }
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  void Bytes(std::span<const uint8_t> b) {
    U32(static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void Str(const std::string& s) { Bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  std::vector<uint8_t> Take() { return std::move(out_); }

 private:
  void Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool U8(uint8_t* v) { return Le(v, 1); }
  bool U16(uint16_t* v) { return Le(v, 2); }
  bool U32(uint32_t* v) { return Le(v, 4); }
  bool U64(uint64_t* v) { return Le(v, 8); }
  bool Bytes(std::vector<uint8_t>* b, size_t max) {
    uint32_t n = 0;
    if (!U32(&n) || n > max || n > in_.size() - pos_) return false;
    b->assign(in_.begin() + pos_, in_.begin() + pos_ + n);
    pos_ += n;
    return true;
  }
  bool Str(std::string* s) {
    std::vector<uint8_t> b;
    if (!Bytes(&b, kMaxString)) return false;
    s->assign(b.begin(), b.end());
    return true;
  }
  [[nodiscard]] bool done() const { return pos_ == in_.size(); }

 private:
  template <typename T>
  bool Le(T* v, int n) {
    if (in_.size() - pos_ < static_cast<size_t>(n)) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += n;
    *v = static_cast<T>(x);
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

void WriteApicMessage(Writer& w, const ApicMessage& a) {
  w.U8(a.vector);
  w.U8(static_cast<uint8_t>(a.delivery_mode));
  w.U8(static_cast<uint8_t>(a.destination_mode));
  w.U8(a.destination);
  w.U8(static_cast<uint8_t>(a.shorthand));
  w.U8(static_cast<uint8_t>((a.level_triggered ? 1 : 0) | (a.level_assert ? 2 : 0)));
  w.U32(a.source_apic_id);
}

// False if truncated; `*fields_ok` false if a field holds a value the APIC message has no meaning for.
bool ReadApicMessage(Reader& r, ApicMessage* a, bool* fields_ok) {
  uint8_t mode = 0, dest_mode = 0, shorthand = 0, flags = 0;
  if (!r.U8(&a->vector) || !r.U8(&mode) || !r.U8(&dest_mode) || !r.U8(&a->destination) || !r.U8(&shorthand) ||
      !r.U8(&flags) || !r.U32(&a->source_apic_id)) {
    return false;
  }
  *fields_ok = !(mode > 7 || mode == 3 || dest_mode > 1 || shorthand > 3);
  a->delivery_mode = static_cast<DeliveryMode>(mode);
  a->destination_mode = static_cast<DestinationMode>(dest_mode);
  a->shorthand = static_cast<DestinationShorthand>(shorthand);
  a->level_triggered = flags & 1;
  a->level_assert = flags & 2;
  return true;
}

bool ValidSize(uint8_t size) { return size == 1 || size == 2 || size == 4 || size == 8; }

}  // namespace

std::vector<uint8_t> Encode(const NodeMessage& message) {
  Writer w;
  w.U8(kVersion);
  if (auto* hello = std::get_if<Hello>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kHello));
    w.U16(hello->node_id);
    w.U16(hello->dsm_port);
    w.Str(hello->host);
  } else if (auto* peers = std::get_if<Peers>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kPeers));
    w.U32(static_cast<uint32_t>(peers->peers.size()));
    for (const auto& p : peers->peers) {
      w.U16(p.node_id);
      w.U16(p.dsm_port);
      w.Str(p.host);
    }
  } else if (auto* req = std::get_if<IoRequest>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kIoRequest));
    w.U64(req->request_id);
    w.U32(req->vcpu_id);
    w.U8(static_cast<uint8_t>(req->kind));
    w.U64(req->address);
    w.U8(req->size);
    w.Bytes(req->data);
  } else if (auto* reply = std::get_if<IoReply>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kIoReply));
    w.U64(reply->request_id);
    w.Bytes(reply->data);
  } else if (auto* irq = std::get_if<Interrupt>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kInterrupt));
    WriteApicMessage(w, irq->message);
  } else if (auto* eoi = std::get_if<Eoi>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kEoi));
    w.U8(eoi->vector);
  } else if (auto* stop = std::get_if<Stop>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kStop));
    w.U32(static_cast<uint32_t>(stop->exit_status));
    w.Str(stop->reason);
  } else if (auto* ready = std::get_if<MeshReady>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kMeshReady));
    w.U16(ready->node_id);
  } else if (auto* echo = std::get_if<Echo>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kEcho));
    w.U64(echo->token);
  } else if (auto* echo_reply = std::get_if<EchoReply>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kEchoReply));
    w.U64(echo_reply->token);
  } else if (auto* evict = std::get_if<VcpuEvict>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kVcpuEvict));
    w.U32(evict->vcpu_id);
  } else if (auto* detached = std::get_if<VcpuDetached>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kVcpuDetached));
    w.U32(detached->vcpu_id);
  } else if (auto* migrate = std::get_if<VcpuMigrate>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kVcpuMigrate));
    w.U32(migrate->vcpu_id);
    w.U8(static_cast<uint8_t>(migrate->run_state));
    w.U8(migrate->halted_with_interrupts ? 1 : 0);
    w.Bytes(migrate->state);
  } else if (auto* arrived = std::get_if<VcpuArrived>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kVcpuArrived));
    w.U32(arrived->vcpu_id);
  } else if (auto* directed = std::get_if<DirectedInterrupt>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kDirectedInterrupt));
    w.U32(directed->apic_id);
    WriteApicMessage(w, directed->message);
  } else if (auto* leaving = std::get_if<Leaving>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kLeaving));
    w.Str(leaving->reason);
  } else if (auto* pause = std::get_if<Pause>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kPause));
    w.U64(pause->token);
    w.U8(pause->paused ? 1 : 0);
  } else if (auto* done = std::get_if<PauseDone>(&message)) {
    w.U8(static_cast<uint8_t>(Type::kPauseDone));
    w.U64(done->token);
    w.U8(done->paused ? 1 : 0);
    w.U32(done->vcpus);
    w.Str(done->error);
  }
  return w.Take();
}

absl::StatusOr<NodeMessage> Decode(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  uint8_t version = 0, type = 0;
  if (!r.U8(&version) || !r.U8(&type)) return absl::InvalidArgumentError("node message: truncated header");
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrFormat("node message: version %u, expected %u", version, kVersion));
  }
  auto bad = [type](const char* what) {
    return absl::InvalidArgumentError(absl::StrFormat("node message type %u: %s", type, what));
  };
  NodeMessage out;
  switch (static_cast<Type>(type)) {
    case Type::kHello: {
      Hello m;
      if (!r.U16(&m.node_id) || !r.U16(&m.dsm_port) || !r.Str(&m.host)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kPeers: {
      Peers m;
      uint32_t n = 0;
      if (!r.U32(&n) || n > kMaxPeers) return bad("bad peer count");
      for (uint32_t i = 0; i < n; ++i) {
        PeerInfo p;
        if (!r.U16(&p.node_id) || !r.U16(&p.dsm_port) || !r.Str(&p.host)) return bad("truncated peer");
        m.peers.push_back(std::move(p));
      }
      out = std::move(m);
      break;
    }
    case Type::kIoRequest: {
      IoRequest m;
      uint8_t kind = 0;
      if (!r.U64(&m.request_id) || !r.U32(&m.vcpu_id) || !r.U8(&kind) || !r.U64(&m.address) || !r.U8(&m.size) ||
          !r.Bytes(&m.data, 8)) {
        return bad("truncated");
      }
      if (kind > static_cast<uint8_t>(IoKind::kMmioWrite)) return bad("bad access kind");
      m.kind = static_cast<IoKind>(kind);
      if (!ValidSize(m.size)) return bad("bad access size");
      bool write = m.kind == IoKind::kPioWrite || m.kind == IoKind::kMmioWrite;
      if (m.data.size() != (write ? m.size : 0u)) return bad("data length does not match the access");
      out = std::move(m);
      break;
    }
    case Type::kIoReply: {
      IoReply m;
      if (!r.U64(&m.request_id) || !r.Bytes(&m.data, 8)) return bad("truncated");
      out = std::move(m);
      break;
    }
    case Type::kInterrupt: {
      Interrupt m;
      bool fields_ok = false;
      if (!ReadApicMessage(r, &m.message, &fields_ok)) return bad("truncated");
      if (!fields_ok) return bad("bad delivery fields");
      out = m;
      break;
    }
    case Type::kEoi: {
      Eoi m;
      if (!r.U8(&m.vector)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kStop: {
      Stop m;
      uint32_t status = 0;
      if (!r.U32(&status) || !r.Str(&m.reason)) return bad("truncated");
      m.exit_status = static_cast<int32_t>(status);
      out = std::move(m);
      break;
    }
    case Type::kMeshReady: {
      MeshReady m;
      if (!r.U16(&m.node_id)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kEcho: {
      Echo m;
      if (!r.U64(&m.token)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kEchoReply: {
      EchoReply m;
      if (!r.U64(&m.token)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kVcpuEvict: {
      VcpuEvict m;
      if (!r.U32(&m.vcpu_id)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kVcpuDetached: {
      VcpuDetached m;
      if (!r.U32(&m.vcpu_id)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kVcpuMigrate: {
      VcpuMigrate m;
      uint8_t run_state = 0, halted_with_interrupts = 0;
      if (!r.U32(&m.vcpu_id) || !r.U8(&run_state) || !r.U8(&halted_with_interrupts) ||
          !r.Bytes(&m.state, kMaxVcpuState)) {
        return bad("truncated or state too large");
      }
      if (run_state < 1 || run_state > 3) return bad("bad run state");
      if (halted_with_interrupts > 1) return bad("bad halt flag");
      m.run_state = static_cast<VcpuRunState>(run_state);
      m.halted_with_interrupts = halted_with_interrupts == 1;
      out = std::move(m);
      break;
    }
    case Type::kVcpuArrived: {
      VcpuArrived m;
      if (!r.U32(&m.vcpu_id)) return bad("truncated");
      out = m;
      break;
    }
    case Type::kDirectedInterrupt: {
      DirectedInterrupt m;
      bool fields_ok = false;
      if (!r.U32(&m.apic_id) || !ReadApicMessage(r, &m.message, &fields_ok)) return bad("truncated");
      if (!fields_ok) return bad("bad delivery fields");
      out = m;
      break;
    }
    case Type::kLeaving: {
      Leaving m;
      if (!r.Str(&m.reason)) return bad("truncated");
      out = std::move(m);
      break;
    }
    case Type::kPause: {
      Pause m;
      uint8_t paused = 0;
      if (!r.U64(&m.token) || !r.U8(&paused)) return bad("truncated");
      if (paused > 1) return bad("bad pause flag");
      m.paused = paused == 1;
      out = m;
      break;
    }
    case Type::kPauseDone: {
      PauseDone m;
      uint8_t paused = 0;
      if (!r.U64(&m.token) || !r.U8(&paused) || !r.U32(&m.vcpus) || !r.Str(&m.error)) return bad("truncated");
      if (paused > 1) return bad("bad pause flag");
      m.paused = paused == 1;
      out = std::move(m);
      break;
    }
    default:
      return bad("unknown type");
  }
  if (!r.done()) return bad("trailing bytes");
  return out;
}

}  // namespace coalesce::node_msg
