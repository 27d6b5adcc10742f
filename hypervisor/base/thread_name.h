// Thread names, so that /proc, top -H and a debugger tell the VMM's threads apart (the tests break a process's
// CPU time down by thread name). A thread names itself as it starts: naming another thread goes through
// /proc/self/task, which an edge runtime's sandbox may not have.
#pragma once

#include <sys/prctl.h>

#include <string>
#include <thread>
#include <utility>

namespace coalesce {

// Names the calling thread (the kernel keeps at most 15 characters).
inline void NameThisThread(const char* name) { ::prctl(PR_SET_NAME, name, 0, 0, 0); }

// A thread that names itself `name`, then runs `body`.
template <typename Body>
std::thread StartNamedThread(std::string name, Body body) {
  return std::thread([name = std::move(name), body = std::move(body)]() mutable {
    NameThisThread(name.c_str());
    body();
  });
}

}  // namespace coalesce
