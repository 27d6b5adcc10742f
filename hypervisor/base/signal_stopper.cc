#include "hypervisor/base/signal_stopper.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "hypervisor/base/thread_name.h"

namespace coalesce {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);  // not a stop: a status report (see run_command.cc)
  sigaddset(&set, SIGPWR);   // not a stop: the ACPI power button (the daemon's `virsh shutdown`)
  return set;
}

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

[[noreturn]] void ForceExit(const SignalStopper::Deadline& d, const char* why) {
  std::fprintf(stderr, "%s: %s: exiting now (status %d)\n", d.who, why, d.forced_exit_status);
  std::fflush(stderr);
  std::fflush(stdout);
  ::_exit(d.forced_exit_status);
}

}  // namespace

void BlockStopSignals() {
  sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalStopper::SignalStopper(std::function<void(int, int)> on_signal, Deadline deadline)
    : on_signal_(std::move(on_signal)), deadline_(deadline) {
  thread_ = StartNamedThread("signals", [this] {
    sigset_t set = StopSignals();
    timespec tick{0, 100'000'000};
    int64_t stop_deadline_ms = -1;
    int first_stop = 0;
    while (!done_.load()) {
      siginfo_t info{};
      int sig = sigtimedwait(&set, &info, &tick);
      if (sig > 0 && sig != SIGUSR2 && sig != SIGPWR) {
        if (first_stop != 0) {
          char why[96];
          std::snprintf(why, sizeof why, "second stop signal (%s) while stopping", strsignal(sig));
          ForceExit(deadline_, why);
        }
        first_stop = sig;
        stop_deadline_ms = NowMs() + deadline_.grace_ms;
      }
      if (sig > 0) on_signal_(sig, info.si_code == SI_QUEUE ? info.si_value.sival_int : 0);
      if (stop_deadline_ms >= 0 && NowMs() >= stop_deadline_ms && !done_.load()) {
        char why[128];
        std::snprintf(why, sizeof why, "not stopped %d ms after %s", deadline_.grace_ms, strsignal(first_stop));
        ForceExit(deadline_, why);
      }
    }
  });
}

SignalStopper::~SignalStopper() {
  done_.store(true);
  thread_.join();
}

}  // namespace coalesce
