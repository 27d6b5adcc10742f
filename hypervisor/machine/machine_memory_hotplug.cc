// The machine's side of ACPI memory hotplug (docs/HOTPLUG.md, "Memory"): `coalesce ctl setmemory SIZE`, and the
// slots `attach ADDR memory=SIZE` plugs in when a memory edge lends RAM to a guest that may grow. The guest's
// view lives in the memory HotplugController; the RAM itself is mapped from the start (GuestMemory's hotplug
// area, a KVM memslot and DSM pages on every node like any other RAM), so plugging a slot in is a word to the
// guest, which adds the range from the slot's _CRS and onlines it.
#include <fcntl.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "devmodel/hotplug_controller.h"
#include "edge_monitor/size.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/errno_status.h"
#include "hypervisor/base/log.h"
#include "hypervisor/base/platform.h"
#include "hypervisor/machine/coalescence_home.h"
#include "hypervisor/machine/machine.h"

namespace coalesce {
namespace {

namespace p = platform;

// How long the guest gets to take a plug event, and to offline and eject a slot: Linux migrates the pages in
// use out of it first (it can when the block is online_movable), which takes longer than a CPU's tasks.
constexpr absl::Duration kInsertTimeout = absl::Seconds(10);
constexpr absl::Duration kEjectTimeout = absl::Seconds(60);

// "slots 0-1 (256M at 0x100000000)": the slots and where the first one starts (the VMM picks consecutive ones).
std::string DescribeSlots(const std::vector<uint32_t>& slots, uint64_t base) {
  return absl::StrFormat("slots %s (%s at %#x)", FormatVcpuList(slots),
                         FormatSize(slots.size() * p::kMemoryHotplugSlotSize),
                         base + slots.front() * p::kMemoryHotplugSlotSize);
}

}  // namespace

uint64_t Machine::PresentMemory() const {
  const uint64_t plugged = memory_hotplug_ ? memory_hotplug_->PresentSlots().size() : 0;
  return config_.memory + plugged * p::kMemoryHotplugSlotSize;
}

absl::StatusOr<std::vector<uint32_t>> Machine::PlugMemorySlots(uint32_t count, uint8_t domain) {
  std::vector<uint32_t> plugged;
  for (uint32_t slot = 0; slot < memory_hotplug_->possible() && plugged.size() < count; ++slot) {
    if (memory_hotplug_->Present(slot)) continue;
    if (absl::Status st = memory_hotplug_->SetDomain(slot, domain); !st.ok()) return st;
    if (absl::Status st = memory_hotplug_->Plug(slot); !st.ok()) return st;
    plugged.push_back(slot);
  }
  for (uint32_t slot : plugged) {
    if (absl::Status st = memory_hotplug_->AwaitInsertTaken(slot, kInsertTimeout); !st.ok()) return st;
  }
  return plugged;
}

absl::Status Machine::UnplugMemorySlots(const std::vector<uint32_t>& slots) {
  for (uint32_t slot : slots) {
    if (absl::Status st = memory_hotplug_->RequestUnplug(slot); !st.ok()) return st;
  }
  for (uint32_t slot : slots) {
    if (absl::Status st = memory_hotplug_->AwaitEjected(slot, kEjectTimeout); !st.ok()) return st;
  }
  // The guest no longer uses the range: on one node its host memory goes back to the host now (a punched
  // hole reads as zeros when plugged again, as fresh RAM). In a coalesced VM the DSM tracks every page of it,
  // so the pages stay where the DSM has them until the slot is plugged again.
  if (!home_) {
    for (uint32_t slot : slots) {
      const uint64_t offset = config_.memory + slot * p::kMemoryHotplugSlotSize;
      if (::fallocate(memory_->memfd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                      static_cast<off_t>(p::kMemoryHotplugSlotSize)) != 0) {
        LOG_WARN("memory slot %u ejected, but its host memory stays: %s", slot,
                 ErrnoStatus("fallocate(PUNCH_HOLE)").message());
      }
    }
  }
  return absl::OkStatus();
}

std::string Machine::SetMemoryCommand(const std::vector<std::string>& words) {
  if (words.size() != 1) return "error: setmemory takes one argument: the guest's RAM size (e.g. 768M)";
  if (memory_hotplug_ == nullptr) {
    return absl::StrFormat(
        "error: setmemory: this guest cannot gain or lose RAM (its %s are all it may have: start "
        "it with --max-memory SIZE, docs/HOTPLUG.md)",
        FormatSize(config_.memory));
  }
  if (!running_.load()) return "error: the VM is still starting";
  // The guest answers a plug or an eject request: it must run.
  if (std::string refused = RefuseWhilePaused("setmemory"); !refused.empty()) return refused;
  const uint64_t most = config_.memory + config_.hotplug_memory();
  absl::StatusOr<uint64_t> want = ParseSize(words[0], "setmemory");
  if (!want.ok() || *want < config_.memory || *want > most || (*want - config_.memory) % p::kMemoryHotplugSlotSize) {
    return absl::StrFormat(
        "error: setmemory: '%s' is not a size from %s to %s in steps of 128M (--memory, "
        "--max-memory)",
        words[0], FormatSize(config_.memory), FormatSize(most));
  }
  const uint64_t base = GuestMemory::HotplugBase(config_.memory);
  const std::vector<uint32_t> present = memory_hotplug_->PresentSlots();
  const uint32_t want_slots = static_cast<uint32_t>((*want - config_.memory) / p::kMemoryHotplugSlotSize);
  const auto start = std::chrono::steady_clock::now();
  if (want_slots == present.size()) {
    return absl::StrFormat("vm %s: the guest has %s of RAM already", config_.name, FormatSize(*want));
  }
  if (want_slots > present.size()) {
    absl::StatusOr<std::vector<uint32_t>> plugged = PlugMemorySlots(want_slots - static_cast<uint32_t>(present.size()));
    if (!plugged.ok()) return absl::StrFormat("error: setmemory: %s", plugged.status().message());
    return absl::StrFormat(
        "vm %s: memory %s plugged in; the guest took them in %.1f ms (Linux onlines them with "
        "memhp_default_state=online or online_movable, else: echo online > /sys/devices/system/memory/memoryN/state); "
        "guest RAM %s",
        config_.name, DescribeSlots(*plugged, base), MsSince(start), FormatSize(PresentMemory()));
  }
  // Less: the highest slots go.
  std::vector<uint32_t> to_remove(present.begin() + want_slots, present.end());
  if (absl::Status st = UnplugMemorySlots(to_remove); !st.ok()) {
    return absl::StrFormat("error: setmemory: %s", st.message());
  }
  {
    absl::MutexLock lock(&lent_mu_);  // unplugged by hand: no edge's departure gives them back any more
    for (auto& [node, slots] : lent_memory_slots_) {
      std::erase_if(slots, [&](uint32_t s) { return std::count(to_remove.begin(), to_remove.end(), s) != 0; });
    }
  }
  return absl::StrFormat("vm %s: memory %s unplugged: the guest offlined and ejected them in %.1f ms; guest RAM %s",
                         config_.name, DescribeSlots(to_remove, base), MsSince(start), FormatSize(PresentMemory()));
}

std::string Machine::GiveBackLentMemory(uint16_t node) {
  std::vector<uint32_t> lent;
  {
    absl::MutexLock lock(&lent_mu_);
    if (auto it = lent_memory_slots_.find(node); it != lent_memory_slots_.end()) {
      lent = std::move(it->second);
      lent_memory_slots_.erase(it);
    }
  }
  if (lent.empty() || memory_hotplug_ == nullptr) return "";
  const uint64_t base = GuestMemory::HotplugBase(config_.memory);
  absl::MutexLock giving_back(&give_back_mu_);  // as for CPUs: the guest must run to eject them
  if (pause_->paused()) {
    return absl::StrFormat("; memory %s, which it lent, stays: the guest is paused (setmemory gives it back)",
                           DescribeSlots(lent, base));
  }
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status st = UnplugMemorySlots(lent); !st.ok()) {
    return absl::StrFormat("; memory %s, which it lent, stays: %s", DescribeSlots(lent, base), st.message());
  }
  return absl::StrFormat("; memory %s, which it lent, given back: the guest ejected it in %.1f ms",
                         DescribeSlots(lent, base), MsSince(start));
}

std::string Machine::MemoryHotplugStatus() const {
  if (memory_hotplug_ == nullptr) return "";
  const std::vector<uint32_t> present = memory_hotplug_->PresentSlots();
  return absl::StrFormat(
      "memory hotplug: %s plugged in (slots %s) of %s more possible, guest RAM %s (setmemory); guest writes "
      "ignored: %u\n",
      FormatSize(present.size() * p::kMemoryHotplugSlotSize), present.empty() ? "none" : FormatVcpuList(present),
      FormatSize(config_.hotplug_memory()), FormatSize(PresentMemory()), memory_hotplug_->ignored_writes());
}

}  // namespace coalesce
