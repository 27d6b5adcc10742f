// DSM frames from hostile peers into one node's coherence engine (dsm/protocol_engine.h), the way the receive
// loop hands them over: a header that ValidatePeerHeader refuses closes the connection; an accepted frame goes
// to OnMessage, and an error from it stops the node. Local faults (consistent with what the page memory holds,
// as userfaultfd would report them) and the clock are interleaved, so peer frames meet every engine state.
//
// Input: a sequence of operations, each a selector byte and its arguments. Missing bytes read as zero.
#include <cstring>
#include <memory>
#include <vector>

#include "dsm/protocol_engine.h"
#include "dsm/wire_format.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/unit/dsm/protocol_sim.h"

using namespace coalesce::dsm;

namespace {

constexpr uint64_t kPages = 8;
constexpr NodeId kNodes = 4;

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  [[nodiscard]] bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  void Bytes(uint8_t* out, size_t n) {
    for (size_t i = 0; i < n; ++i) out[i] = Byte();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  const uint8_t setup = in.Byte();
  const NodeId self = setup % kNodes;  // node 0 is home and manages every page under home placement
  auto placement = (setup & 0x10) ? MakeHashPlacement({0, 1, 2, 3}) : MakeHomePlacement(0);
  sim::SimMemory mem(kPages);
  if (self == 0) {
    for (uint64_t p = 0; p < kPages; ++p) (void)mem.Install(p, nullptr, /*writable=*/true);
  }
  DsmStats stats(kPages);
  EngineConfig config{.self = self, .home = 0, .num_pages = kPages, .request_timeout = absl::Seconds(1)};
  ProtocolEngine engine(config, placement.get(), &mem, &stats);
  absl::Time now = absl::UnixEpoch();
  std::vector<Message> out;
  for (int steps = 0; !in.empty() && steps < 256; ++steps) {
    out.clear();
    const uint8_t op = in.Byte();
    absl::Status status;
    switch (op % 8) {
      case 0: {  // a local access, reported only as userfaultfd could report it
        const uint64_t page = in.Byte() % kPages;
        const bool write = in.Byte() & 1;
        const sim::SimMemory::Page& p = mem.pages_[page];
        if (!p.present) {
          status = engine.OnFault(page, write, /*wp=*/false, now, &out);
        } else if (write && !p.writable) {
          status = engine.OnFault(page, true, /*wp=*/true, now, &out);
        }
        break;
      }
      case 6:  // time passes
        now += absl::Milliseconds(10 * in.Byte());
        status = engine.CheckTimeouts(now);
        break;
      default: {  // a frame from a peer: raw header bytes (op 7) or a well-formed header with fuzzed fields
        const NodeId peer = static_cast<NodeId>((self + 1 + (op >> 3) % (kNodes - 1)) % kNodes);
        WireHeader h;
        if (op % 8 == 7) {
          in.Bytes(reinterpret_cast<uint8_t*>(&h), sizeof(h));
        } else {
          const uint8_t type = in.Byte() % (kMaxMsgType + 1);
          // GRANT_M, NO_DATA, OP_DONE, ZERO_PAGE, READ_AHEAD: every flag a peer's frame may carry to the engine.
          const uint16_t flags = in.Byte() & (kFlagGrantModified | kFlagNoData | kFlagOpDone | kFlagZeroPage |
                                              kFlagReadAhead);
          h = MakeHeader(static_cast<MsgType>(type), peer, in.Byte() % (kPages + 2), in.Byte() % (kNodes + 2),
                         flags, 0, in.Byte());
          const bool page_payload =
              (type == static_cast<uint8_t>(MsgType::kPageData) && !(flags & (kFlagNoData | kFlagZeroPage))) ||
              (type == static_cast<uint8_t>(MsgType::kEvictReq) && (op & 0x80) && !(flags & kFlagZeroPage));
          h.payload_len = page_payload ? kPageSize : 0;
        }
        if (!ValidatePeerHeader(h, peer).ok()) return 0;  // the connection closes
        Message m{.type = static_cast<MsgType>(h.type), .src = peer, .dst = self, .page = h.page, .arg = h.arg,
                  .flags = h.flags, .seq = h.seq};
        m.payload.resize(h.payload_len);
        in.Bytes(m.payload.data(), std::min<size_t>(m.payload.size(), 16));
        if (m.type == MsgType::kHeartbeat) break;
        if (m.type == MsgType::kLeave || m.type == MsgType::kUser) break;  // handled above the engine
        status = engine.OnMessage(m, now, &out);
        break;
      }
    }
    // As DsmNode routes them: messages to this node go straight back into the engine; the rest are checked.
    for (size_t i = 0; status.ok() && i < out.size() && i < 4096; ++i) {
      const Message m = out[i];
      FUZZ_CHECK(m.dst < kMaxNodes);  // the engine names only valid node ids (Transport drops unknown ones)
      FUZZ_CHECK(m.page < kPages);
      if (m.dst == self) status = engine.OnMessage(m, now, &out);
    }
    if (!status.ok()) return 0;  // the node stops: no more input is processed
  }
  return 0;
}
