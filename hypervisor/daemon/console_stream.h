// `virsh console`: one libvirt stream carrying a running guest's COM1. Output is read from the console file
// the guest appends to (from where no earlier client has read, as a pty would hold it) and sent as STREAM
// messages with status CONTINUE; input from the client is written into the guest's console FIFO. When the
// guest stops the stream ends with an empty STREAM/CONTINUE (end of file); a client's finish or abort is
// confirmed with an empty STREAM/OK. One pump thread per stream.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "hypervisor/base/unique_fd.h"
#include "hypervisor/daemon/domain_manager.h"
#include "hypervisor/daemon/rpc_server.h"

namespace coalesce::daemon {

class ConsoleStream final {
 public:
  ConsoleStream(std::shared_ptr<Connection> conn, MessageHeader open_call, DomainManager* domains,
                std::string domain, ConsoleSource source);
  ~ConsoleStream();  // stops and joins the pump
  ConsoleStream(const ConsoleStream&) = delete;
  ConsoleStream& operator=(const ConsoleStream&) = delete;

  void Start();
  // Client data for the guest's COM1.
  void Write(std::span<const uint8_t> bytes);
  // Ends the stream from our side: the client sees end of file (used when another client forces the console).
  void Close();
  // The client finished (status OK) or aborted (status ERROR) the stream: stop, then confirm.
  void ClientEnded(MessageStatus status);
  [[nodiscard]] uint32_t serial() const { return header_.serial; }
  [[nodiscard]] bool finished() const { return done_.load(); }

 private:
  void Pump();
  void StopPump();
  bool Send(MessageStatus status, std::span<const uint8_t> payload);

  std::weak_ptr<Connection> conn_;
  MessageHeader header_;  // the OPEN_CONSOLE call: stream messages carry its procedure and serial
  DomainManager* domains_;
  std::string domain_;
  ConsoleSource source_;
  UniqueFd input_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  // Start, ClientEnded (the owner's reader thread) and Close (another client's `console --force`) may race:
  // every start and join of the pump happens under join_mu_.
  std::mutex join_mu_;
  std::thread pump_;
};

}  // namespace coalesce::daemon
