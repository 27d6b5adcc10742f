#include "hypervisor/emul/host_atomics.h"

#include <cstring>

namespace coalesce {

bool HostCompareExchange16(void* target, const uint8_t expected[16], const uint8_t desired[16], uint8_t old[16]) {
  uint64_t exp_lo, exp_hi, des_lo, des_hi;
  std::memcpy(&exp_lo, expected, 8);
  std::memcpy(&exp_hi, expected + 8, 8);
  std::memcpy(&des_lo, desired, 8);
  std::memcpy(&des_hi, desired + 8, 8);
  bool swapped;
  // Inline asm rather than __atomic on __int128: without -mcx16 GCC calls libatomic, which may use a lock
  // that the guest's own cmpxchg16b would not respect.
  asm volatile("lock cmpxchg16b (%[p])"
               : "+a"(exp_lo), "+d"(exp_hi), "=@ccz"(swapped)
               : [p] "r"(target), "b"(des_lo), "c"(des_hi)
               : "memory");
  std::memcpy(old, &exp_lo, 8);
  std::memcpy(old + 8, &exp_hi, 8);
  return swapped;
}

bool HostCompareExchange8(void* target, const uint8_t expected[8], const uint8_t desired[8], uint8_t old[8]) {
  uint64_t exp, des;
  std::memcpy(&exp, expected, 8);
  std::memcpy(&des, desired, 8);
  bool swapped;
  asm volatile("lock cmpxchgq %[d], (%[p])" : "+a"(exp), "=@ccz"(swapped) : [p] "r"(target), [d] "r"(des) : "memory");
  std::memcpy(old, &exp, 8);
  return swapped;
}

}  // namespace coalesce
