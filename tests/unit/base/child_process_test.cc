#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/child_process.h"

namespace coalesce {
namespace {

ChildProcess Spawn(std::vector<std::string> argv, int pass_fd = -1) {
  ChildProcess::Options options;
  options.argv = std::move(argv);
  if (pass_fd >= 0) options.pass_fds = {pass_fd};
  auto child = ChildProcess::Spawn(options);
  REQUIRE(child.ok());
  return *std::move(child);
}

TEST_CASE("ChildProcess runs a program and reports its exit status", "[child_process]") {
  ChildProcess child = Spawn({"/bin/sh", "-c", "exit 3"});
  auto status = child.Wait();
  REQUIRE(status.ok());
  CHECK(DescribeWaitStatus(*status) == "exited with status 3");
  CHECK(WaitStatusToExitCode(*status) == 3);
}

TEST_CASE("ChildProcess reports an exec failure with the path", "[child_process]") {
  ChildProcess::Options options;
  options.argv = {"/nonexistent/remote-runtime", "remote-node"};
  auto child = ChildProcess::Spawn(options);
  REQUIRE_FALSE(child.ok());
  CHECK(child.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(child.status().message()), Catch::Contains("/nonexistent/remote-runtime"));
}

TEST_CASE("ChildProcess passes one fd as fd 3 and closes the others", "[child_process]") {
  int passed[2];
  REQUIRE(::pipe2(passed, O_CLOEXEC) == 0);
  int leaked[2];
  REQUIRE(::pipe(leaked) == 0);  // not CLOEXEC: the child must still not inherit it
  ChildProcess child = Spawn(
      {"/bin/sh", "-c", absl::StrCat("echo ready >&3; test ! -e /proc/self/fd/", leaked[1])}, passed[1]);
  ::close(passed[1]);
  auto status = child.Wait();
  REQUIRE(status.ok());
  CHECK(WaitStatusToExitCode(*status) == 0);
  char buffer[16] = {};
  CHECK(::read(passed[0], buffer, sizeof(buffer) - 1) == 6);
  CHECK(std::string(buffer) == "ready\n");
  ::close(passed[0]);
  ::close(leaked[0]);
  ::close(leaked[1]);
}

TEST_CASE("ChildProcess gives the child stdin from a pipe", "[child_process]") {
  int in[2];
  REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
  REQUIRE(::write(in[1], "secret", 6) == 6);
  ::close(in[1]);
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  ChildProcess::Options options;
  options.argv = {"/bin/sh", "-c", "read -r line; echo \"got $line\" >&3"};
  options.pass_fds = {out[1]};
  options.input_fd = in[0];
  auto child = ChildProcess::Spawn(options);
  REQUIRE(child.ok());
  ::close(in[0]);
  ::close(out[1]);
  REQUIRE(child->Wait().ok());
  char buffer[32] = {};
  CHECK(::read(out[0], buffer, sizeof(buffer) - 1) == 11);
  CHECK(std::string(buffer) == "got secret\n");
  ::close(out[0]);
}

TEST_CASE("ChildProcess can start its child as pid 1 of a new PID namespace", "[child_process]") {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  ChildProcess::Options options;
  options.argv = {"/bin/sh", "-c", "echo $$ >&3; sleep 30"};
  options.pass_fds = {out[1]};
  options.new_pid_namespace = true;
  auto child = ChildProcess::Spawn(options);
  ::close(out[1]);
  if (::geteuid() != 0) {  // CLONE_NEWPID needs CAP_SYS_ADMIN: the refusal names what was tried
    REQUIRE_FALSE(child.ok());
    CHECK_THAT(std::string(child.status().message()), Catch::Contains("new PID namespace"));
    ::close(out[0]);
    return;
  }
  REQUIRE(child.ok());
  char buffer[16] = {};
  CHECK(::read(out[0], buffer, sizeof(buffer) - 1) == 2);
  CHECK(std::string(buffer) == "1\n");  // the child sees itself as pid 1
  CHECK(child->pid() > 1);              // the parent sees its real pid, and signals reach it
  REQUIRE(child->Signal(SIGKILL).ok());
  auto status = child->Wait();
  REQUIRE(status.ok());
  CHECK(WaitStatusToExitCode(*status) == -SIGKILL);
  ::close(out[0]);
}

TEST_CASE("ChildProcess passes several fds as 3, 4, ... in order, whatever their numbers", "[child_process]") {
  int a[2], b[2];
  REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
  // Passed in the opposite order of their numbers, so that placing one at its target could overwrite another.
  ChildProcess::Options options;
  options.argv = {"/bin/sh", "-c", "echo first >&3; echo second >&4"};
  options.pass_fds = {b[1], a[1]};
  auto child = ChildProcess::Spawn(options);
  REQUIRE(child.ok());
  ::close(a[1]);
  ::close(b[1]);
  REQUIRE(child->Wait().ok());
  char buffer[16] = {};
  CHECK(::read(b[0], buffer, sizeof(buffer) - 1) == 6);
  CHECK(std::string(buffer) == "first\n");
  char other[16] = {};
  CHECK(::read(a[0], other, sizeof(other) - 1) == 7);
  CHECK(std::string(other) == "second\n");
  ::close(a[0]);
  ::close(b[0]);
  options.pass_fds.assign(ChildProcess::kMaxPassedFds + 1, 0);
  auto too_many = ChildProcess::Spawn(options);
  REQUIRE_FALSE(too_many.ok());
  CHECK_THAT(std::string(too_many.status().message()), Catch::Contains("at most 8"));
}

TEST_CASE("ChildProcess can start its child as root of a new user namespace, nobody outside", "[child_process]") {
  if (absl::Status st = ChildProcess::CheckUserNamespaces(); !st.ok()) {
    // Not root, or a host that refuses user namespaces: the refusal says why, and Spawn fails the same way.
    INFO(st.message());
    CHECK(st.message().size() > 0);
    return;
  }
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  ChildProcess::Options options;
  // Inside: uid 0 and the single mapping; the host's /etc/shadow (root:shadow 0640) is out of reach.
  options.argv = {"/bin/sh", "-c",
                  "echo \"$(id -u) $(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')\" >&3; "
                  "cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable >&3; sleep 30"};
  options.pass_fds = {out[1]};
  options.new_pid_namespace = true;
  options.user_namespace = ChildProcess::Options::IdMapping{65534, 65534};
  auto child = ChildProcess::Spawn(options);
  ::close(out[1]);
  REQUIRE(child.ok());
  std::string seen;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') seen.push_back(c);
  CHECK(seen == "0 0 65534 1");
  // Outside it is nobody: the host's view of its credentials.
  std::ifstream status(absl::StrCat("/proc/", child->pid(), "/status"));
  std::string uid_line;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Uid:", 0) == 0) uid_line = line;
  }
  CHECK(uid_line == "Uid:\t65534\t65534\t65534\t65534");
  REQUIRE(child->Signal(SIGKILL).ok());
  REQUIRE(child->Wait().ok());
  char rest[32] = {};
  CHECK(::read(out[0], rest, sizeof(rest) - 1) == 0);  // no "shadow-readable"
  ::close(out[0]);
}

TEST_CASE("ChildProcess starts user-namespace children from a parent whose other threads come and go",
          "[child_process]") {
  // The child is cloned from a multi-threaded parent: it must take its ids without glibc's all-threads
  // machinery, whose locks another thread of the parent may hold at the moment of the clone.
  if (!ChildProcess::CheckUserNamespaces().ok()) return;  // the case above says why
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop.load()) std::thread([] {}).join();
  });
  int exited_zero = 0;
  for (int i = 0; i < 40; ++i) {
    ChildProcess::Options options;
    options.argv = {"/bin/true"};
    options.user_namespace = ChildProcess::Options::IdMapping{65534, 65534};
    auto child = ChildProcess::Spawn(options);
    if (!child.ok()) break;
    auto status = child->Wait();
    if (status.ok() && WaitStatusToExitCode(*status) == 0) ++exited_zero;
  }
  stop = true;
  churn.join();
  CHECK(exited_zero == 40);
}

TEST_CASE("ChildProcess signals through its pidfd", "[child_process]") {
  ChildProcess child = Spawn({"/bin/sleep", "30"});
  REQUIRE(child.Signal(SIGTERM).ok());
  auto status = child.Wait();
  REQUIRE(status.ok());
  CHECK(WaitStatusToExitCode(*status) == -SIGTERM);
  CHECK_THAT(DescribeWaitStatus(*status), Catch::StartsWith("killed by signal 15"));
  // Signalling a reaped child is harmless.
  CHECK(child.Signal(SIGKILL).ok());
}

TEST_CASE("Destroying a ChildProcess kills and reaps it", "[child_process]") {
  pid_t pid;
  {
    ChildProcess child = Spawn({"/bin/sleep", "30"});
    pid = child.pid();
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(::kill(pid, 0) == -1);
  CHECK(errno == ESRCH);
}

}  // namespace
}  // namespace coalesce
