// `coalesce edge` as a child process for tests: the test runner (EDGE_AGENT_RUNNER) with the fake runtime
// (FAKE_REMOTE_NODE) on a free loopback port, started and its banner read (the first stdout line, printed once it
// listens). The including target defines both macros.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "hypervisor/base/child_process.h"

namespace coalesce {

struct AgentRunnerProcess {
  ChildProcess process;
  std::string banner;   // "edge agent listening on ADDRESS capacity ... control PATH"
  std::string address;  // host:port it serves on
};

// `flags`: what follows `edge --listen 127.0.0.1:0 --runtime FAKE_REMOTE_NODE` (shell words).
inline AgentRunnerProcess StartAgentRunner(const std::string& flags) {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  ChildProcess::Options options;
  // The agent's stdout goes to the pipe (fd 3 in the shell), which the shell hands over with exec.
  options.argv = {"/bin/sh", "-c",
                  "exec \"$0\" edge --listen 127.0.0.1:0 --runtime \"$1\" " + flags + " >&3", EDGE_AGENT_RUNNER,
                  FAKE_REMOTE_NODE};
  options.pass_fds = {out[1]};
  auto agent = ChildProcess::Spawn(options);
  ::close(out[1]);
  REQUIRE(agent.ok());
  std::string banner;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') banner.push_back(c);
  ::close(out[0]);
  const std::string prefix = "edge agent listening on ";
  REQUIRE(banner.rfind(prefix, 0) == 0);
  std::string address = banner.substr(prefix.size(), banner.find(' ', prefix.size()) - prefix.size());
  return {*std::move(agent), std::move(banner), std::move(address)};
}

}  // namespace coalesce
