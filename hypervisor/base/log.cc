#include "hypervisor/base/log.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace coalesce {
namespace {

LogLevel InitialLevel() {
  const char* env = std::getenv("COALESCE_LOG");
  LogLevel level = LogLevel::kWarning;
  if (env != nullptr) ParseLogLevel(env, &level);
  return level;
}

std::atomic<int>& LevelStorage() {
  static std::atomic<int> level{static_cast<int>(InitialLevel())};
  return level;
}

}  // namespace

bool LogThisOccurrence(uint64_t occurrence) {
  return occurrence <= 8 || (occurrence & (occurrence - 1)) == 0;
}

void SetLogLevel(LogLevel level) { LevelStorage().store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStorage().load()); }

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  if (text == "debug") *out = LogLevel::kDebug;
  else if (text == "info") *out = LogLevel::kInfo;
  else if (text == "warning" || text == "warn") *out = LogLevel::kWarning;
  else if (text == "error") *out = LogLevel::kError;
  else return false;
  return true;
}

void LogLine(LogLevel level, std::string_view message) {
  static constexpr const char* kNames[] = {"debug", "info", "warning", "error"};
  // One fprintf per line keeps lines from different threads whole.
  std::fprintf(stderr, "coalesce: %s: %.*s\n", kNames[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
}

}  // namespace coalesce
