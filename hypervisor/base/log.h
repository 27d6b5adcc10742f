// Minimal leveled logging to stderr (Debian 12's Abseil has no absl/log).
// The level is process-wide and set once at start-up from --log-level / COALESCE_LOG.
#pragma once

#include <atomic>
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

}  // namespace coalesce

#define LOG_DEBUG(...) ::coalesce::Log(::coalesce::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::coalesce::Log(::coalesce::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::coalesce::Log(::coalesce::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) ::coalesce::Log(::coalesce::LogLevel::kError, __VA_ARGS__)
