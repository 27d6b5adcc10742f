#include "hypervisor/base/signal_stopper.h"

#include <pthread.h>
#include <signal.h>

#include <ctime>

namespace coalesce {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR2);  // not a stop: a status report (see run_command.cc)
  return set;
}

}  // namespace

void BlockStopSignals() {
  sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

SignalStopper::SignalStopper(std::function<void(int)> on_signal) : on_signal_(std::move(on_signal)) {
  thread_ = std::thread([this] {
    sigset_t set = StopSignals();
    timespec tick{0, 100'000'000};
    while (!done_.load()) {
      int sig = sigtimedwait(&set, nullptr, &tick);
      if (sig > 0) on_signal_(sig);
    }
  });
  pthread_setname_np(thread_.native_handle(), "signals");
}

SignalStopper::~SignalStopper() {
  done_.store(true);
  thread_.join();
}

}  // namespace coalesce
