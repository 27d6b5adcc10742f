// The one way every coalesce command reads its flags: "--flag VALUE" or "--flag=VALUE", switches without a
// value, "-h" for "--help", positional arguments only where the command takes them, required flags reported
// together. Each command declares its flags once, with a setter that checks and stores the value; errors name
// the flag and what was wrong with it, and the command puts its own name in front.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace coalesce {

class FlagParser {
 public:
  // Checks and stores one value of `flag`; an error says what is wrong (the common setters below name the flag).
  using Setter = std::function<absl::Status(absl::string_view flag, const std::string& value)>;

  // A flag with a value: "--name VALUE" or "--name=VALUE". Given twice, the setter runs twice.
  FlagParser& Value(std::string name, Setter set);
  // A flag that is given or not: "--name" alone ("--name=..." is refused).
  FlagParser& Switch(std::string name, bool* on);
  // A switch with an optional value, "--name" or "--name=VALUE" (never the next argument): either sets *on, and
  // only the second runs the setter (which sees an empty value as given: "--name=").
  FlagParser& OptionalValue(std::string name, bool* on, Setter set);
  // Another spelling of a declared flag ("-h" for "--help").
  FlagParser& Alias(std::string alias, std::string name);
  // Flags whose absence is an error ("missing --a, --b").
  FlagParser& Require(std::string name);
  // Arguments that are not flags go here, in order; without it they are refused ("unexpected argument").
  FlagParser& Positional(std::vector<std::string>* out);

  // Reads `args` (the words after the command). Stops at the first error.
  absl::Status Parse(const std::vector<std::string>& args);
  // Whether the last Parse saw `name` (under any spelling).
  bool Seen(absl::string_view name) const { return seen_.contains(std::string(name)); }

 private:
  enum class Kind { kValue, kSwitch, kOptionalValue };
  struct Flag {
    Kind kind;
    Setter set;
    bool* on = nullptr;  // switches and optional values
  };
  std::map<std::string, Flag> flags_;
  std::map<std::string, std::string> aliases_;
  std::vector<std::string> required_;
  std::vector<std::string>* positional_ = nullptr;
  std::set<std::string> seen_;
};

// The start of a command's main: parses `args` into `flags`. An error is printed to stderr as "COMMAND: ERROR",
// then USAGE, and `usage_status` returned; with `help` set by the flags USAGE goes to stdout and 0 is returned;
// nullopt: go on.
std::optional<int> ParseCommandLine(FlagParser& flags, const std::vector<std::string>& args, const bool& help,
                                    const char* command, const char* usage, int usage_status);

// Setters for the common kinds of value.
FlagParser::Setter StoreText(std::string* out);                                              // any text, empty too
FlagParser::Setter StoreNonEmpty(std::string* out, absl::string_view what);                  // "--tls-ca needs a file"
FlagParser::Setter AppendText(std::vector<std::string>* out);                                // a repeatable flag
FlagParser::Setter StoreUint32(uint32_t* out, uint32_t min = 0, uint32_t max = UINT32_MAX);  // decimal
FlagParser::Setter StoreUint64(uint64_t* out, uint64_t min = 0, uint64_t max = UINT64_MAX);
FlagParser::Setter StoreInt64(int64_t* out);
FlagParser::Setter StoreFd(int* out);  // a file descriptor number, >= 0
// A number of seconds (fractions allowed) in [min, max].
FlagParser::Setter StoreSeconds(double* out, double min, double max);
// One of `choices`, e.g. {"host", "baseline", "auto"}.
FlagParser::Setter StoreChoice(std::string* out, std::vector<std::string> choices);

}  // namespace coalesce
