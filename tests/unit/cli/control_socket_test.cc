// The VM's control socket (hypervisor/base/control_socket.h): real UNIX sockets in a temporary directory.
#include "hypervisor/base/control_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace coalesce {
namespace {

struct Dir {
  Dir() {
    char pattern[] = "/tmp/coalesce-ctl-test-XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};

TEST_CASE("control socket: names and paths") {
  CHECK(ValidateVmName("web-1.test_a").ok());
  CHECK(!ValidateVmName("").ok());
  CHECK(!ValidateVmName(".hidden").ok());
  CHECK(!ValidateVmName("a/b").ok());
  CHECK(!ValidateVmName(std::string(65, 'a')).ok());
  CHECK_THAT(std::string(ValidateVmName("x y").message()), Catch::Contains("VM name 'x y'"));
  ::setenv("COALESCE_RUN_DIR", "/tmp/somewhere", 1);
  CHECK(ControlSocketPath("vm1") == "/tmp/somewhere/vm1.sock");
  ::unsetenv("COALESCE_RUN_DIR");
}

TEST_CASE("control socket: one command, one reply; a second VM of the same name is refused") {
  Dir dir;
  const std::string path = dir.path + "/sub/vm1.sock";  // the directory is created, 0700
  auto server = ControlServer::Start(path, [](std::string_view c) {
    return c == "status" ? std::string("vm vm1: running") : "error: unknown command '" + std::string(c) + "'";
  });
  REQUIRE(server.ok());
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir.path + "/sub").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  auto reply = CallControl(path, "status", absl::Seconds(5));
  REQUIRE(reply.ok());
  CHECK(*reply == "vm vm1: running\n");
  auto unknown = CallControl(path, "dance", absl::Seconds(5));
  REQUIRE(unknown.ok());
  CHECK(*unknown == "error: unknown command 'dance'\n");

  auto twin = ControlServer::Start(path, [](std::string_view) { return std::string(); });
  REQUIRE(!twin.ok());
  CHECK(twin.status().code() == absl::StatusCode::kAlreadyExists);
  CHECK(CallControl(path, "status", absl::Seconds(5)).ok());  // the first one still serves

  server->reset();
  CHECK(!std::filesystem::exists(path));  // removed when the VM ends
  auto gone = CallControl(path, "status", absl::Seconds(1));
  REQUIRE(!gone.ok());
  CHECK(gone.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(gone.status().message()), Catch::Contains(path));
}

TEST_CASE("control socket: a stale socket is replaced; a silent client is cut off, not waited for forever") {
  Dir dir;
  const std::string path = dir.path + "/vm2.sock";
  {
    // A socket file nobody listens on, as a VM killed with SIGKILL leaves behind.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd);
  }
  auto server = ControlServer::Start(path, [](std::string_view) { return std::string("ok"); });
  REQUIRE(server.ok());
  // A client that connects and says nothing holds the server at most 5 s; the next one is answered after.
  int silent = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  REQUIRE(::connect(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  auto reply = CallControl(path, "status", absl::Seconds(15));
  ::close(silent);
  REQUIRE(reply.ok());
  CHECK(*reply == "ok\n");
  // A client that gives up before the answer gets DeadlineExceeded.
  auto slow = ControlServer::Start(dir.path + "/vm3.sock", [](std::string_view) {
    ::usleep(1'500'000);
    return std::string("late");
  });
  REQUIRE(slow.ok());
  auto late = CallControl(dir.path + "/vm3.sock", "status", absl::Milliseconds(300));
  REQUIRE(!late.ok());
  CHECK(late.status().code() == absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace coalesce
