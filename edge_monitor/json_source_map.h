// Maps the field paths in protobuf's JSON error messages ("(guest.memory)", "(edge[1].vcpus[0])") back to a line and
// column in the JSON text. Protobuf 3.21's JsonStringToMessage reports where an error is only as a field path (or,
// for syntax errors, a text snippet), while users need "file:line:column". This is a small, strict JSON scanner: it
// records where each value and each member key starts, and where the first syntax error is.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace coalesce {

struct SourcePosition {
  int line = 1;    // 1-based
  int column = 1;  // 1-based, in bytes
};

class JsonSourceMap final {
 public:
  // Scans `text` (which must outlive nothing: positions are copied out).
  static JsonSourceMap Build(std::string_view text);

  // Where the value at `path` starts. Paths use '.' between members and [i] for array elements, the root is "".
  // Member names compare without '_' and case-insensitively, so proto names and lowerCamelCase JSON names match.
  std::optional<SourcePosition> FindValue(std::string_view path) const;
  // Where the key of member `path` starts ("guest.bogus" -> the position of "bogus").
  std::optional<SourcePosition> FindKey(std::string_view path) const;

  // The first syntax error, if the text is not valid JSON.
  const std::optional<SourcePosition>& syntax_error_position() const { return syntax_error_position_; }
  const std::string& syntax_error() const { return syntax_error_; }

  // Turns a protobuf JSON error message into the best position found for it, if any.
  std::optional<SourcePosition> LocateProtobufError(std::string_view message) const;

  // Normalizes a path for lookup (drops '_', lowercases).
  static std::string NormalizePath(std::string_view path);

 private:
  friend class JsonScanner;

  SourcePosition PositionOf(size_t offset) const;

  std::vector<size_t> line_starts_;
  absl::flat_hash_map<std::string, size_t> value_offsets_;
  absl::flat_hash_map<std::string, size_t> key_offsets_;
  std::optional<SourcePosition> syntax_error_position_;
  std::string syntax_error_;
};

}  // namespace coalesce
