// The one interface every fuzz target implements: libFuzzer's entry point. In the fuzzing build (scripts/fuzz.sh:
// clang, -fsanitize=fuzzer,address,undefined) libFuzzer drives it; in the normal build replay_main.cc feeds it the
// committed corpus, so every seed and every crash input ever found stays a regression test.
//
// A target may return early on refused input; it aborts (FUZZ_CHECK) only when a property the code promises is
// broken, for example "what Decode accepts, Encode writes back the same".
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
