#include "hypervisor/base/timer_service.h"

#include "hypervisor/base/thread_name.h"

namespace coalesce {

TimerService::TimerService() {
  thread_ = StartNamedThread("timers", [this] { Loop(); });
  thread_id_ = thread_.get_id();
}

TimerService::~TimerService() { Stop(); }

void TimerService::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    queue_.clear();
    deadline_of_.clear();
  }
  if (thread_.joinable() && std::this_thread::get_id() != thread_id_) thread_.join();
}

TimerService::TimerId TimerService::Schedule(Clock::time_point deadline, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  TimerId id = next_id_++;
  if (stop_) return id;  // torn down: never runs, and Cancel() of it is a no-op
  queue_.emplace(std::make_pair(deadline, id), std::move(fn));
  deadline_of_.emplace(id, deadline);
  return id;
}

void TimerService::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  auto it = deadline_of_.find(id);
  if (it != deadline_of_.end()) {
    queue_.erase(std::make_pair(it->second, id));
    deadline_of_.erase(it);
    return;
  }
  // Wait for a running callback to finish, unless we are that callback.
  if (std::this_thread::get_id() == thread_id_) return;
  auto not_running = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; };
  mu_.Await(absl::Condition(&not_running));
}

void TimerService::Freeze() {
  absl::MutexLock lock(&mu_);
  frozen_ = true;
}

void TimerService::Thaw() {
  absl::MutexLock lock(&mu_);
  frozen_ = false;
}

void TimerService::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    if (frozen_) {
      auto thawed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !frozen_; };
      mu_.Await(absl::Condition(&thawed));
      continue;
    }
    if (queue_.empty()) {
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&wake));
      continue;
    }
    auto first = queue_.begin();
    auto now = Clock::now();
    if (first->first.first > now) {
      // Sleep until the first deadline or until something earlier is scheduled.
      auto deadline = first->first;
      auto changed = [this, deadline]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || queue_.empty() || queue_.begin()->first < deadline;
      };
      auto dur = deadline.first - now;
      mu_.AwaitWithTimeout(absl::Condition(&changed), absl::FromChrono(dur));
      continue;
    }
    TimerId id = first->first.second;
    std::function<void()> fn = std::move(first->second);
    queue_.erase(first);
    deadline_of_.erase(id);
    running_ = id;
    mu_.Unlock();
    fn();
    mu_.Lock();
    running_ = 0;
  }
}

}  // namespace coalesce
