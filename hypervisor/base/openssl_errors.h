// The two OpenSSL helpers every user of libcrypto here needs: an owning-pointer deleter for OpenSSL's *_free
// functions and the thread's error queue as one line of text. Header-only, so base itself does not link OpenSSL;
// the DSM's frame cipher and the control plane's TLS code (edge_monitor/openssl_util.h) both build on it.
#pragma once

#include <openssl/err.h>

#include <memory>
#include <string>

namespace coalesce::ossl {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

// Drains OpenSSL's error queue into one line ("" when empty).
inline std::string TakeErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    const char* reason = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += reason != nullptr ? reason : buf;
  }
  return out;
}

}  // namespace coalesce::ossl
