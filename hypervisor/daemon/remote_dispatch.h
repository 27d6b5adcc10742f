// The libvirt remote program (0x20008086 v1) on top of the DomainManager: decodes each call's arguments,
// runs it, and encodes the reply or a libvirt error. Procedures it does not implement get libvirt's
// VIR_ERR_NO_SUPPORT with the procedure's name; malformed arguments get VIR_ERR_RPC. It also routes stream
// messages to the console streams it opened.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "hypervisor/daemon/console_stream.h"
#include "hypervisor/daemon/domain_manager.h"
#include "hypervisor/daemon/rpc_server.h"
#include "hypervisor/daemon/xdr_stream.h"

namespace coalesce::daemon {

class RemoteDispatcher final : public Dispatcher {
 public:
  explicit RemoteDispatcher(DomainManager* domains) : domains_(domains) {}
  ~RemoteDispatcher() override;
  void Handle(const std::shared_ptr<Connection>& conn, const Message& message) override;

 private:
  struct Client {
    bool opened = false;
    std::map<uint32_t, std::shared_ptr<ConsoleStream>> streams;  // by the OPEN_CONSOLE call's serial
  };
  // Runs one call; fills `ret` or returns the error for the reply.
  absl::Status Call(const std::shared_ptr<Connection>& conn, Client& client, const MessageHeader& header,
                    XdrDecoder& args, XdrEncoder& ret);
  absl::Status OpenConsole(const std::shared_ptr<Connection>& conn, Client& client, const MessageHeader& header,
                           const std::string& domain, uint32_t flags);
  void HandleStream(const std::shared_ptr<Connection>& conn, const Message& message);
  void Forget(Connection* conn);

  DomainManager* domains_;
  absl::Mutex mu_;
  std::map<Connection*, Client> clients_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::weak_ptr<ConsoleStream>> consoles_ ABSL_GUARDED_BY(mu_);  // by domain
};

}  // namespace coalesce::daemon
