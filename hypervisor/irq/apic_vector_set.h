// A 256-bit set of interrupt vectors, the shape of the local APIC's IRR, ISR and TMR. Not thread-safe:
// the owning LocalApic guards it with its own lock.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace coalesce {

class ApicVectorSet final {
 public:
  void Set(uint8_t vector) { words_[vector / 32] |= Bit(vector); }
  void Clear(uint8_t vector) { words_[vector / 32] &= ~Bit(vector); }
  void Assign(uint8_t vector, bool value) { value ? Set(vector) : Clear(vector); }
  [[nodiscard]] bool Test(uint8_t vector) const { return (words_[vector / 32] & Bit(vector)) != 0; }
  void ClearAll() { words_.fill(0); }

  // The highest vector in the set, or -1 when it is empty. The APIC always serves the highest vector.
  [[nodiscard]] int Highest() const {
    for (int i = kWords - 1; i >= 0; --i) {
      if (words_[i] != 0) return i * 32 + 31 - std::countl_zero(words_[i]);
    }
    return -1;
  }

  // The 32-bit register view: word `index` (0-7) holds vectors 32*index .. 32*index+31, as the xAPIC
  // page lays out IRR/ISR/TMR at 16-byte strides.
  [[nodiscard]] uint32_t Word(unsigned index) const { return index < kWords ? words_[index] : 0; }
  void SetWord(unsigned index, uint32_t value) {
    if (index < kWords) words_[index] = value;
  }

 private:
  static constexpr int kWords = 8;
  static constexpr uint32_t Bit(uint8_t vector) { return 1u << (vector % 32); }
  std::array<uint32_t, kWords> words_{};
};

}  // namespace coalesce
