// Everything needed to build one guest machine on this node.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace coalesce {

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;
  std::string cmdline;
  uint32_t vcpus = 1;
  uint64_t memory = 256ULL << 20;
  // Where the guest's COM1 output goes (default: stdout). Input comes from stdin when `console_input`.
  std::function<void(uint8_t)> console_output;
  bool console_input = true;
};

}  // namespace coalesce
