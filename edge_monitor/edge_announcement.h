// What an edge agent announces about itself on the local network (DNS-SD TXT record, `coalesce edge --announce`):
// built from the same capacity snapshot GetCapacity answers with, so that a browser sees at a glance what a
// home then asks for precisely. Keys (TXT version 1):
//   txtvers=1
//   vcpus=FREE/TOTAL          vCPUs it may still lend / offers in all
//   memory=FREE/TOTAL         guest memory, in MiB
//   load=X                    1-minute load average per online CPU (two decimals)
//   battery=PERCENT,STATE     STATE: discharging or charging; "none" without a battery
//   vms=N                     VMs hosted now
//   tls=1|0                   whether homes must use mutual TLS
#pragma once

#include <string>
#include <vector>

#include "coalesce/edge_agent.pb.h"

namespace coalesce {

std::vector<std::string> AnnouncementTxt(const pb::Capacity& capacity, bool tls);

}  // namespace coalesce
