// Domain XML as `virsh define` sends it (hypervisor/daemon/domain_xml.h, parsed by libxml2): refused with an
// error or accepted; an accepted definition formats to XML that parses back to the same definition.
#include <string>

#include "hypervisor/daemon/domain_xml.h"
#include "tests/fuzz/fuzz_target.h"

using namespace coalesce::daemon;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string xml(reinterpret_cast<const char*>(data), size);
  auto def = ParseDomainXml(xml, /*generate_uuid=*/false);
  if (!def.ok()) return 0;
  (void)RunArguments(*def);
  const std::string formatted = FormatDomainXml(*def);
  auto again = ParseDomainXml(formatted, /*generate_uuid=*/false);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(FormatDomainXml(*again) == formatted);
  return 0;
}
