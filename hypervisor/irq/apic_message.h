// An interrupt message as the APIC bus carries it: what an ICR write, an IOAPIC redirection entry or an
// MSI produces, and what the InterruptRouter delivers to local APICs (here or on another node).
#pragma once

#include <cstdint>

namespace coalesce {

enum class DeliveryMode : uint8_t {
  kFixed = 0,
  kLowestPriority = 1,
  kSmi = 2,
  kNmi = 4,
  kInit = 5,
  kStartup = 6,
  kExtInt = 7,
};

enum class DestinationMode : uint8_t { kPhysical = 0, kLogical = 1 };

enum class DestinationShorthand : uint8_t {
  kNone = 0,
  kSelf = 1,
  kAllIncludingSelf = 2,
  kAllExcludingSelf = 3,
};

struct ApicMessage {
  uint8_t vector = 0;
  DeliveryMode delivery_mode = DeliveryMode::kFixed;
  DestinationMode destination_mode = DestinationMode::kPhysical;
  uint8_t destination = 0;  // xAPIC: 8-bit physical id or logical mask; 0xff = broadcast in physical mode
  DestinationShorthand shorthand = DestinationShorthand::kNone;
  bool level_triggered = false;  // trigger mode; level-triggered fixed interrupts get an EOI broadcast
  bool level_assert = true;      // ICR level bit (INIT level de-assert has assert=false)
  uint32_t source_apic_id = 0;   // sender, for the self / all-excluding-self shorthands
};

}  // namespace coalesce
