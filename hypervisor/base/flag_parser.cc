#include "hypervisor/base/flag_parser.h"

#include <charconv>
#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace coalesce {

FlagParser& FlagParser::Value(std::string name, Setter set) {
  flags_[std::move(name)] = Flag{Kind::kValue, std::move(set)};
  return *this;
}

FlagParser& FlagParser::Switch(std::string name, bool* on) {
  flags_[std::move(name)] = Flag{Kind::kSwitch, nullptr, on};
  return *this;
}

FlagParser& FlagParser::OptionalValue(std::string name, bool* on, Setter set) {
  flags_[std::move(name)] = Flag{Kind::kOptionalValue, std::move(set), on};
  return *this;
}

FlagParser& FlagParser::Alias(std::string alias, std::string name) {
  aliases_[std::move(alias)] = std::move(name);
  return *this;
}

FlagParser& FlagParser::Require(std::string name) {
  required_.push_back(std::move(name));
  return *this;
}

FlagParser& FlagParser::Positional(std::vector<std::string>* out) {
  positional_ = out;
  return *this;
}

absl::Status FlagParser::Parse(const std::vector<std::string>& args) {
  seen_.clear();
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-') {
      if (positional_ == nullptr) return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
      positional_->push_back(arg);
      continue;
    }
    std::string name = arg;
    std::string value;
    bool inline_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (auto alias = aliases_.find(name); alias != aliases_.end()) name = alias->second;
    auto flag = flags_.find(name);
    if (flag == flags_.end()) return absl::InvalidArgumentError(absl::StrCat("unknown flag '", name, "'"));
    const Flag& f = flag->second;
    if (f.kind == Kind::kSwitch && inline_value) {
      return absl::InvalidArgumentError(absl::StrCat(name, " takes no value"));
    }
    if (f.kind == Kind::kValue && !inline_value) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      value = args[++i];
      inline_value = true;
    }
    if (f.on != nullptr) *f.on = true;
    if (inline_value) {
      if (absl::Status st = f.set(name, value); !st.ok()) return st;
    }
    seen_.insert(name);
  }
  std::vector<std::string> missing;
  for (const std::string& name : required_) {
    if (!seen_.contains(name)) missing.push_back(name);
  }
  if (!missing.empty()) return absl::InvalidArgumentError(absl::StrCat("missing ", absl::StrJoin(missing, ", ")));
  return absl::OkStatus();
}

std::optional<int> ParseCommandLine(FlagParser& flags, const std::vector<std::string>& args, const bool& help,
                                    const char* command, const char* usage, int usage_status) {
  if (absl::Status st = flags.Parse(args); !st.ok()) {
    std::fprintf(stderr, "%s: %s\n\n%s", command, std::string(st.message()).c_str(), usage);
    return usage_status;
  }
  if (help) {
    std::fputs(usage, stdout);
    return 0;
  }
  return std::nullopt;
}

namespace {

absl::Status NotA(absl::string_view flag, const std::string& value, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(flag, ": '", value, "' is not ", what));
}

template <typename T>
FlagParser::Setter StoreWhole(T* out, T min, T max) {
  return [out, min, max](absl::string_view flag, const std::string& value) {
    T n{};
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size()) {
      return NotA(flag, value, "a number");
    }
    if (n < min || n > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": ", value, " is out of range: between ", min, " and ", max));
    }
    *out = n;
    return absl::OkStatus();
  };
}

}  // namespace

FlagParser::Setter StoreText(std::string* out) {
  return [out](absl::string_view, const std::string& value) {
    *out = value;
    return absl::OkStatus();
  };
}

FlagParser::Setter StoreNonEmpty(std::string* out, absl::string_view what) {
  return [out, what = std::string(what)](absl::string_view flag, const std::string& value) {
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs ", what));
    *out = value;
    return absl::OkStatus();
  };
}

FlagParser::Setter AppendText(std::vector<std::string>* out) {
  return [out](absl::string_view, const std::string& value) {
    out->push_back(value);
    return absl::OkStatus();
  };
}

FlagParser::Setter StoreUint32(uint32_t* out, uint32_t min, uint32_t max) { return StoreWhole(out, min, max); }

FlagParser::Setter StoreUint64(uint64_t* out, uint64_t min, uint64_t max) { return StoreWhole(out, min, max); }

FlagParser::Setter StoreInt64(int64_t* out) { return StoreWhole<int64_t>(out, INT64_MIN, INT64_MAX); }

FlagParser::Setter StoreFd(int* out) {
  return [out](absl::string_view flag, const std::string& value) {
    int fd = -1;
    if (!absl::SimpleAtoi(value, &fd) || fd < 0) return NotA(flag, value, "a file descriptor");
    *out = fd;
    return absl::OkStatus();
  };
}

FlagParser::Setter StoreSeconds(double* out, double min, double max) {
  return [out, min, max](absl::string_view flag, const std::string& value) {
    double s = 0;
    if (!absl::SimpleAtod(value, &s) || !(s >= min && s <= max)) {
      return NotA(flag, value, absl::StrCat("a number of seconds from ", min, " to ", max));
    }
    *out = s;
    return absl::OkStatus();
  };
}

FlagParser::Setter StoreChoice(std::string* out, std::vector<std::string> choices) {
  return [out, choices = std::move(choices)](absl::string_view flag, const std::string& value) {
    for (const std::string& c : choices) {
      if (c == value) {
        *out = value;
        return absl::OkStatus();
      }
    }
    return NotA(flag, value, absl::StrCat("one of ", absl::StrJoin(choices, ", ")));
  };
}

}  // namespace coalesce
