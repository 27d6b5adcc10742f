// A half-open guest-physical range [begin, end).
#pragma once

#include <cstdint>

namespace coalesce {

struct AddressRange {
  uint64_t begin;
  uint64_t end;  // exclusive
};

}  // namespace coalesce
