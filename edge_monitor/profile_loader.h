// Reading a coalescence profile (protos/coalesce/profile.proto) from a file, with protobuf's own parsers.
//
// The format follows the file extension: .textproto, .pbtxt, .txtpb, .textpb -> protobuf text format; .json -> JSON.
// Errors name the file, line and column: "vm.textproto:3:9: Message type "coalesce.pb.Guest" has no field named
// "vpcus".". Loading does not validate: the CLI loads, applies its flag overrides (profile_overrides.h), then calls
// ValidateProfile (profile_validator.h). LoadAndValidateProfile does the first and last steps for callers without
// overrides.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "coalesce/profile.pb.h"

namespace coalesce {

enum class ProfileFormat { kText, kJson };

// Chooses the format from the file name's extension; an unknown extension is an error listing the accepted ones.
absl::StatusOr<ProfileFormat> ProfileFormatForPath(std::string_view path);

// Parses `content`; `name` is used in error messages (normally the file's path).
absl::StatusOr<pb::Profile> ParseProfile(std::string_view content, ProfileFormat format, std::string_view name);

// Reads and parses the file at `path` (at most 1 MiB).
absl::StatusOr<pb::Profile> LoadProfile(const std::string& path);

// LoadProfile, then ValidateProfile; validation errors are prefixed with the path.
absl::StatusOr<pb::Profile> LoadAndValidateProfile(const std::string& path);

}  // namespace coalesce
