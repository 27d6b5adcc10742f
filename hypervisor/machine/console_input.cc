#include "hypervisor/machine/console_input.h"

#include <poll.h>
#include <unistd.h>

#include <vector>

#include "hypervisor/base/thread_name.h"

namespace coalesce {

ConsoleInput::ConsoleInput(std::function<void(std::span<const uint8_t>)> deliver, std::function<void()> quit)
    : deliver_(std::move(deliver)), quit_(std::move(quit)) {
  if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
    termios raw = saved_;
    cfmakeraw(&raw);
    raw.c_oflag |= OPOST | ONLCR;  // keep our own log lines readable
    if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) raw_mode_ = true;
  }
  thread_ = StartNamedThread("console-in", [this] { Loop(); });
}

ConsoleInput::~ConsoleInput() {
  stop_.store(true);
  thread_.join();
  if (raw_mode_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
}

void ConsoleInput::Loop() {
  bool escape = false;
  uint8_t buf[256];
  while (!stop_.load()) {
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    // Poll with a timeout so destruction never waits on a read that may not come.
    int r = ::poll(&pfd, 1, 100);
    if (r <= 0) continue;
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) return;  // EOF or error: no more input, the guest keeps running
    std::vector<uint8_t> out;
    out.reserve(static_cast<size_t>(n));
    for (ssize_t i = 0; i < n; ++i) {
      uint8_t c = buf[i];
      if (raw_mode_ && escape) {
        escape = false;
        if (c == 'x') {
          quit_();
          return;
        }
        if (c != 0x01) out.push_back(0x01);
      } else if (raw_mode_ && c == 0x01) {
        escape = true;
        continue;
      }
      out.push_back(c);
    }
    if (!out.empty()) deliver_(out);
  }
}

}  // namespace coalesce
