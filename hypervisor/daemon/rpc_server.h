// The daemon's transport: a UNIX stream socket (mode 0600) that accepts libvirt RPC clients, one thread per
// client. Each message is framed and checked here (rpc_message.h) and handed to the Dispatcher; replies and
// stream data go back through the client's Connection, whose writes are serialized. A client that sends a
// malformed message is answered with an error where the header could be read, else disconnected; either way
// it is logged and counted, and the daemon serves the others. A message must arrive whole within
// kMessageTimeout once its first byte has; an idle client may stay connected.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/base/unique_fd.h"
#include "hypervisor/daemon/rpc_message.h"

namespace coalesce::daemon {

inline constexpr auto kMessageTimeout = std::chrono::seconds(30);
inline constexpr size_t kMaxClients = 128;
inline constexpr size_t kReadChunk = 256 * 1024;

// One connected client. Shared by its reader thread and any stream pumps it owns.
class Connection final {
 public:
  explicit Connection(UniqueFd fd) : fd_(std::move(fd)) {}
  // Writes one whole message; false once the client is gone.
  bool Send(const MessageHeader& header, std::span<const uint8_t> payload);
  void Close();  // wakes the reader; later Sends fail
  [[nodiscard]] bool closed() const { return closed_.load(); }
  [[nodiscard]] int fd() const { return fd_.get(); }

  // Called when the connection ends (for stream pumps and per-client state).
  void OnClose(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);
  void RunCloseHandlers() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  UniqueFd fd_;
  absl::Mutex write_mu_;  // one message at a time on the wire
  absl::Mutex mu_;
  std::vector<std::function<void()>> on_close_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> closed_{false};
};

class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // Handles one message from `conn` (a call, or stream data for a stream the dispatcher opened). It answers
  // through conn.Send; it runs on the client's reader thread, so a slow call delays only that client.
  virtual void Handle(const std::shared_ptr<Connection>& conn, const Message& message) = 0;
};

struct ServerCounters {
  std::atomic<uint64_t> clients{0};
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> malformed{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> refused{0};
};

class RpcServer final {
 public:
  // Binds `socket_path` (refusing one that another daemon still answers on) and starts accepting.
  static absl::StatusOr<std::unique_ptr<RpcServer>> Start(const std::string& socket_path, Dispatcher* dispatcher);
  ~RpcServer();  // stops accepting, disconnects every client, joins every thread, removes the socket
  RpcServer(const RpcServer&) = delete;
  RpcServer& operator=(const RpcServer&) = delete;

  [[nodiscard]] const ServerCounters& counters() const { return counters_; }

 private:
  RpcServer(std::string path, UniqueFd listener, Dispatcher* dispatcher);
  void AcceptLoop();
  void Serve(std::shared_ptr<Connection> conn);
  // Reads exactly out.size() bytes. `first` allows an idle wait before the first byte.
  absl::Status ReadExact(Connection& conn, std::span<uint8_t> out, bool first);

  const std::string path_;
  UniqueFd listener_;
  Dispatcher* dispatcher_;
  std::atomic<bool> stop_{false};
  ServerCounters counters_;
  std::thread acceptor_;
  absl::Mutex mu_;
  struct ClientThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;  // set when Serve() returns: the thread can be joined at once
  };
  std::list<ClientThread> client_threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace coalesce::daemon
