// Minimal leveled logging to stderr (Debian 12's Abseil has no absl/log).
// The level is process-wide and set once at start-up from --log-level / COALESCE_LOG.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace coalesce {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "debug|info|warning|error"; false on anything else.
bool ParseLogLevel(std::string_view text, LogLevel* out);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& fmt, const Args&... args) {
  if (static_cast<int>(level) < static_cast<int>(GetLogLevel())) return;
  LogLine(level, absl::StrFormat(fmt, args...));
}

// For events a guest or a peer can cause at will (a refused descriptor chain): the 1st to 8th occurrence at a
// call site are logged, then the 16th, 32nd, 64th... with the count, so a hostile guest cannot flood the log or
// slow the device thread with it. The callers also count every occurrence where the count is useful.
[[nodiscard]] bool LogThisOccurrence(uint64_t occurrence);
template <typename... Args>
void LogSampled(LogLevel level, std::atomic<uint64_t>& hits, const absl::FormatSpec<Args...>& fmt,
                const Args&... args) {
  const uint64_t n = hits.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!LogThisOccurrence(n) || static_cast<int>(level) < static_cast<int>(GetLogLevel())) return;
  std::string line = absl::StrFormat(fmt, args...);
  if (n > 1) absl::StrAppendFormat(&line, " (occurrence %u; further ones are logged at powers of two)", n);
  LogLine(level, line);
}

}  // namespace coalesce

#define LOG_DEBUG(...) ::coalesce::Log(::coalesce::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::coalesce::Log(::coalesce::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::coalesce::Log(::coalesce::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) ::coalesce::Log(::coalesce::LogLevel::kError, __VA_ARGS__)
// Sampled logging (LogSampled above): one occurrence counter per call site.
#define LOG_WARN_SAMPLED(...)                                                           \
  do {                                                                                  \
    static std::atomic<uint64_t> coalesce_log_hits{0};                                  \
    ::coalesce::LogSampled(::coalesce::LogLevel::kWarning, coalesce_log_hits, __VA_ARGS__); \
  } while (0)
#define LOG_ERROR_SAMPLED(...)                                                        \
  do {                                                                                \
    static std::atomic<uint64_t> coalesce_log_hits{0};                                \
    ::coalesce::LogSampled(::coalesce::LogLevel::kError, coalesce_log_hits, __VA_ARGS__); \
  } while (0)
