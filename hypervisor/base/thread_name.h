// Names the calling thread (at most 15 characters shown), so that /proc, top -H and a debugger tell the VMM's
// threads apart (the tests break a process's CPU time down by thread name). Called by each thread as it starts:
// naming another thread goes through /proc/self/task, which an edge runtime's sandbox may not have.
#pragma once

#include <sys/prctl.h>

namespace coalesce {

inline void NameThisThread(const char* name) { ::prctl(PR_SET_NAME, name, 0, 0, 0); }

}  // namespace coalesce
