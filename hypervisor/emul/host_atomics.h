// Compare-exchange on host memory that aliases guest RAM, done with the same locked instruction the guest
// asked for, so other vCPUs (running natively or in another thread) observe it atomically.
#pragma once

#include <cstdint>

namespace coalesce {

// 16 bytes at a 16-byte aligned address: lock cmpxchg16b. Returns true when the exchange happened;
// `old` receives the previous contents either way.
bool HostCompareExchange16(void* target, const uint8_t expected[16], const uint8_t desired[16], uint8_t old[16]);
// 8 bytes at any address that does not cross a page: lock cmpxchg (x86 handles misalignment, as the guest's
// cmpxchg8b would).
bool HostCompareExchange8(void* target, const uint8_t expected[8], const uint8_t desired[8], uint8_t old[8]);

}  // namespace coalesce
