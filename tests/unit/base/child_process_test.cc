#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "hypervisor/base/child_process.h"

namespace coalesce {
namespace {

ChildProcess Spawn(std::vector<std::string> argv, int pass_fd = -1) {
  ChildProcess::Options options;
  options.argv = std::move(argv);
  options.pass_fd = pass_fd;
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
  options.pass_fd = out[1];
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
  options.pass_fd = out[1];
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
