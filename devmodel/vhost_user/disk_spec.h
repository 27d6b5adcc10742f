// A disk as the user names it: `FILE[,format=qcow2|raw][,readonly=on|off][,shadow=on|off]` (coalesce run
// --disk, the profile, <disk> in domain XML). Pure parsing and the image checks made before a storage daemon starts.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace coalesce {

enum class DiskFormat { kAuto, kQcow2, kRaw };
const char* DiskFormatName(DiskFormat f);

struct DiskSpec {
  std::string path;
  DiskFormat format = DiskFormat::kAuto;
  bool readonly = false;
  // Shadow rings on one node too (docs/DISKS.md): every request is tracked, so a dying storage daemon fails them
  // with an I/O error instead of leaving them unanswered; costs a thread wake-up per request. Always on in a
  // coalesced guest.
  bool shadow = false;
};

// InvalidArgument naming the option for an empty path, an unknown key or a bad value.
absl::StatusOr<DiskSpec> ParseDiskSpec(std::string_view arg);

// Opens the image as the daemon will (read-only or read-write) and reads its first bytes: NotFound or
// FailedPrecondition (no permission) naming the file, InvalidArgument when format=qcow2 names a file without the qcow2 magic.
// FailedPrecondition when another process writes the image (QEMU's lock bytes, see disk_spec.cc).
// Returns the format to use: kAuto becomes kQcow2 when the magic is there, else kRaw.
absl::StatusOr<DiskFormat> CheckDiskImage(const DiskSpec& disk);

}  // namespace coalesce
