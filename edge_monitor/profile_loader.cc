#include "edge_monitor/profile_loader.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "edge_monitor/json_source_map.h"
#include "edge_monitor/profile_validator.h"
#include "hypervisor/base/small_file.h"

namespace coalesce {
namespace {

constexpr size_t kMaxProfileBytes = 1 << 20;

// Collects text-format parse errors with their (0-based, from protobuf) positions, reported 1-based.
class CollectingErrorCollector final : public google::protobuf::io::ErrorCollector {
 public:
  explicit CollectingErrorCollector(std::string_view name) : name_(name) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column, const std::string& message) override {
    errors_.push_back(absl::StrCat(name_, ":", line + 1, ":", column + 1, ": ", message));
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::string name_;
  std::vector<std::string> errors_;
};

absl::StatusOr<pb::Profile> ParseText(std::string_view content, std::string_view name) {
  pb::Profile profile;
  CollectingErrorCollector collector(name);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  const bool ok = parser.ParseFromString(std::string(content), &profile);
  if (ok) return profile;
  if (collector.errors().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": not a valid text-format profile"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(collector.errors(), "\n"));
}

absl::StatusOr<pb::Profile> ParseJson(std::string_view content, std::string_view name) {
  pb::Profile profile;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(content.data(), content.size()), &profile);
  if (status.ok()) return profile;

  const JsonSourceMap map = JsonSourceMap::Build(content);
  std::string message(status.message().data(), status.message().size());
  // Syntax errors from protobuf carry a multi-line text snippet; our scanner's position and wording replace it.
  if (map.syntax_error_position().has_value()) {
    const SourcePosition at = *map.syntax_error_position();
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ":", at.line, ":", at.column, ": ", map.syntax_error()));
  }
  if (const size_t newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
  if (auto at = map.LocateProtobufError(message)) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ":", at->line, ":", at->column, ": ", message));
  }
  return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": ", message));
}

}  // namespace

absl::StatusOr<ProfileFormat> ProfileFormatForPath(std::string_view path) {
  const absl::string_view p(path.data(), path.size());
  for (const char* ext : {".textproto", ".pbtxt", ".txtpb", ".textpb"}) {
    if (absl::EndsWith(p, ext)) return ProfileFormat::kText;
  }
  if (absl::EndsWith(p, ".json")) return ProfileFormat::kJson;
  return absl::InvalidArgumentError(absl::StrCat(
      "profile ", p, ": unknown file extension; use .textproto, .pbtxt or .txtpb (text format) or .json"));
}

absl::StatusOr<pb::Profile> ParseProfile(std::string_view content, ProfileFormat format, std::string_view name) {
  return format == ProfileFormat::kJson ? ParseJson(content, name) : ParseText(content, name);
}

absl::StatusOr<pb::Profile> LoadProfile(const std::string& path) {
  auto format = ProfileFormatForPath(path);
  if (!format.ok()) return format.status();
  auto content = ReadSmallFile(path, kMaxProfileBytes, "profile");
  if (!content.ok()) return content.status();
  return ParseProfile(*content, *format, path);
}

absl::StatusOr<pb::Profile> LoadAndValidateProfile(const std::string& path) {
  auto profile = LoadProfile(path);
  if (!profile.ok()) return profile.status();
  if (absl::Status st = ValidateProfile(*profile); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  }
  return profile;
}

}  // namespace coalesce
