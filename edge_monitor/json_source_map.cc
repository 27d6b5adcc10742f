#include "edge_monitor/json_source_map.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace coalesce {

// Recursive-descent scanner over RFC 8259 JSON. Depth is bounded so a hostile file cannot exhaust the stack.
class JsonScanner final {
 public:
  JsonScanner(std::string_view text, JsonSourceMap* map) : text_(text), map_(map) {}

  void Run() {
    SkipSpace();
    if (!Value("", 0)) return;
    SkipSpace();
    if (pos_ != text_.size()) Fail("unexpected text after the JSON value");
  }

 private:
  static constexpr int kMaxDepth = 64;

  bool Fail(std::string_view why) {
    if (failed_) return false;
    failed_ = true;
    map_->syntax_error_position_ = map_->PositionOf(pos_);
    map_->syntax_error_ = pos_ >= text_.size() ? absl::StrCat("unexpected end of input: ", std::string(why))
                                               : std::string(why);
    return false;
  }

  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Value(const std::string& path, int depth) {
    if (depth > kMaxDepth) return Fail("nested too deeply");
    if (pos_ >= text_.size()) return Fail("expected a value");
    map_->value_offsets_.emplace(JsonSourceMap::NormalizePath(path), pos_);
    const char c = text_[pos_];
    if (c == '{') return Object(path, depth);
    if (c == '[') return Array(path, depth);
    if (c == '"') return String(nullptr);
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) return Number();
    for (std::string_view literal : {"true", "false", "null"}) {
      if (text_.substr(pos_, literal.size()) == literal) {
        pos_ += literal.size();
        return true;
      }
    }
    return Fail("expected a value");
  }

  bool Object(const std::string& path, int depth) {
    ++pos_;  // '{'
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Fail("expected a member name in double quotes");
      const size_t key_start = pos_;
      std::string key;
      if (!String(&key)) return false;
      const std::string member = path.empty() ? key : absl::StrCat(path, ".", key);
      map_->key_offsets_.emplace(JsonSourceMap::NormalizePath(member), key_start);
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':') return Fail("expected ':' after the member name");
      ++pos_;
      SkipSpace();
      if (!Value(member, depth + 1)) return false;
      SkipSpace();
      if (pos_ >= text_.size()) return Fail("expected ',' or '}'");
      if (text_[pos_] == '}') {
        ++pos_;
        return true;
      }
      if (text_[pos_] != ',') return Fail("expected ',' or '}'");
      ++pos_;
    }
  }

  bool Array(const std::string& path, int depth) {
    ++pos_;  // '['
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (size_t index = 0;; ++index) {
      SkipSpace();
      if (!Value(absl::StrCat(path, "[", index, "]"), depth + 1)) return false;
      SkipSpace();
      if (pos_ >= text_.size()) return Fail("expected ',' or ']'");
      if (text_[pos_] == ']') {
        ++pos_;
        return true;
      }
      if (text_[pos_] != ',') return Fail("expected ',' or ']'");
      ++pos_;
    }
  }

  // Escapes are checked for shape only; `out` gets the raw text between the quotes (good enough for member names).
  bool String(std::string* out) {
    ++pos_;  // '"'
    const size_t start = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '"') {
        if (out != nullptr) *out = std::string(text_.substr(start, pos_ - start));
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in a string");
      if (c == '\\') {
        ++pos_;
        if (pos_ >= text_.size()) break;
        if (text_[pos_] == 'u') {
          for (int i = 1; i <= 4; ++i) {
            if (pos_ + i >= text_.size() || !std::isxdigit(static_cast<unsigned char>(text_[pos_ + i]))) {
              return Fail("bad \\u escape");
            }
          }
          pos_ += 4;
        } else if (std::string_view("\"\\/bfnrt").find(text_[pos_]) == std::string_view::npos) {
          return Fail("bad escape in a string");
        }
      }
      ++pos_;
    }
    return Fail("unterminated string");
  }

  bool Number() {
    auto digits = [&] {
      const size_t start = pos_;
      while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      return pos_ > start;
    };
    if (text_[pos_] == '-') ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return Fail("bad number");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (!digits()) return Fail("bad number");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digits()) return Fail("bad number");
    }
    return true;
  }

  std::string_view text_;
  JsonSourceMap* map_;
  size_t pos_ = 0;
  bool failed_ = false;
};

JsonSourceMap JsonSourceMap::Build(std::string_view text) {
  JsonSourceMap map;
  map.line_starts_.push_back(0);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') map.line_starts_.push_back(i + 1);
  }
  JsonScanner(text, &map).Run();
  return map;
}

SourcePosition JsonSourceMap::PositionOf(size_t offset) const {
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  const size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
  return SourcePosition{static_cast<int>(line_index + 1), static_cast<int>(offset - line_starts_[line_index] + 1)};
}

std::string JsonSourceMap::NormalizePath(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c != '_') out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::optional<SourcePosition> JsonSourceMap::FindValue(std::string_view path) const {
  auto it = value_offsets_.find(NormalizePath(path));
  if (it == value_offsets_.end()) return std::nullopt;
  return PositionOf(it->second);
}

std::optional<SourcePosition> JsonSourceMap::FindKey(std::string_view path) const {
  auto it = key_offsets_.find(NormalizePath(path));
  if (it == key_offsets_.end()) return std::nullopt;
  return PositionOf(it->second);
}

std::optional<SourcePosition> JsonSourceMap::LocateProtobufError(std::string_view message) const {
  if (syntax_error_position_.has_value()) return syntax_error_position_;
  // Protobuf's messages look like "(guest.memory): invalid value ...", "(guest) bogus: Cannot find field." or, for
  // a member of the root object, "bogus: Cannot find field.".
  if (message.empty()) return std::nullopt;
  if (message.front() != '(') {
    const size_t colon = message.find(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    return FindKey(message.substr(0, colon));
  }
  const size_t close = message.find(')');
  if (close == std::string_view::npos) return std::nullopt;
  const std::string_view path = message.substr(1, close - 1);
  std::string_view rest = message.substr(close + 1);
  if (!rest.empty() && rest.front() == ' ') {
    // "(path) member: why": the member (an unknown field) is the more precise place.
    rest.remove_prefix(1);
    const size_t colon = rest.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      const std::string member =
          path.empty() ? std::string(rest.substr(0, colon))
                       : absl::StrCat(std::string(path), ".", std::string(rest.substr(0, colon)));
      if (auto key = FindKey(member)) return key;
    }
  }
  return FindValue(path);
}

}  // namespace coalesce
