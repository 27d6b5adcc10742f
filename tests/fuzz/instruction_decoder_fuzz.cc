// Guest instruction bytes (hypervisor/emul/instruction_decoder.h): the guest controls them, so the decoder must
// refuse or decode any 15 bytes without a crash, and never claim more bytes than it was given.
#include <algorithm>
#include <span>

#include "hypervisor/emul/instruction_decoder.h"
#include "tests/fuzz/fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto insn = coalesce::DecodeInstruction64(std::span<const uint8_t>(data, std::min<size_t>(size, 15)));
  if (insn.ok()) FUZZ_CHECK(insn->length <= std::min<size_t>(size, 15));
  return 0;
}
