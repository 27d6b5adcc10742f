// Feeds the host's stdin to the guest's UART from a thread of its own. When stdin is a terminal it is put
// in raw mode (restored on destruction) so the guest's shell gets keys as typed; Ctrl-A x stops the VM.
#pragma once

#include <termios.h>

#include <atomic>
#include <functional>
#include <span>
#include <thread>

namespace coalesce {

class ConsoleInput final {
 public:
  // `deliver` gets input bytes; `quit` is called on Ctrl-A x (terminal only).
  ConsoleInput(std::function<void(std::span<const uint8_t>)> deliver, std::function<void()> quit);
  ~ConsoleInput();
  ConsoleInput(const ConsoleInput&) = delete;
  ConsoleInput& operator=(const ConsoleInput&) = delete;

 private:
  void Loop();

  std::function<void(std::span<const uint8_t>)> deliver_;
  std::function<void()> quit_;
  std::atomic<bool> stop_{false};
  bool raw_mode_ = false;
  termios saved_{};
  std::thread thread_;
};

}  // namespace coalesce
