// Decodes one 64-bit-mode x86 instruction from raw bytes: legacy prefixes, REX, the primary/0F/0F38/0F3A
// opcode maps, ModRM/SIB/displacement (RIP-relative included) and immediates. VEX/EVEX/XOP encodings are
// recognised only far enough to be reported as unknown.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "hypervisor/emul/instruction.h"

namespace coalesce {

// Errors: kOutOfRange when `bytes` ends inside the instruction (fetch more and retry),
// kInvalidArgument when the encoding is longer than 15 bytes or cannot be decoded.
absl::StatusOr<Instruction> DecodeInstruction64(std::span<const uint8_t> bytes);

}  // namespace coalesce
