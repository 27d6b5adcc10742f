// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Debian 12's Abseil (20220623) ships neither.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define COALESCE_CONCAT_INNER(a, b) a##b
#define COALESCE_CONCAT(a, b) COALESCE_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                       \
  do {                                              \
    ::absl::Status coalesce_status_ = (expr);       \
    if (!coalesce_status_.ok()) return coalesce_status_; \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

// ASSIGN_OR_RETURN(auto x, MakeX());
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(COALESCE_CONCAT(coalesce_statusor_, __LINE__), lhs, expr)
