#include "hypervisor/cli/ctl_command.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "hypervisor/base/control_socket.h"
#include "hypervisor/base/flag_parser.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {
namespace {

const char kCtlUsage[] =
    "usage: coalesce ctl --vm NAME [--timeout SECONDS] COMMAND [ARGUMENTS]\n"
    "       coalesce ctl --socket PATH [--timeout SECONDS] COMMAND [ARGUMENTS]\n"
    "\n"
    "Sends one command to a running VM (`coalesce run --name NAME`) over its control socket\n"
    "(in $COALESCE_RUN_DIR, /run/coalesce as root, else $XDG_RUNTIME_DIR/coalesce) and prints the reply.\n"
    "--socket PATH names the socket itself: a VM's, or an edge agent's (`coalesce edge --control`).\n"
    "\n"
    "commands to a VM:\n"
    "  status    the VM's nodes: where each vCPU runs, how many guest pages each node owns, round trips\n"
    "  shutdown  press the guest's ACPI power button (a Linux guest powers off cleanly)\n"
    "  move VCPU NODE\n"
    "            move a running vCPU to NODE (home, a node number from `status`, or an edge agent's\n"
    "            address); prints how long the vCPU was paused\n"
    "  attach ADDR vcpus=LIST\n"
    "            lease LIST (vCPUs running elsewhere now) on the edge agent at ADDR while the guest runs:\n"
    "            it joins as a new node and the vCPUs move there; those absent from the guest are\n"
    "            plugged in (--max-vcpus)\n"
    "  attach ADDR memory=SIZE\n"
    "            lease SIZE of RAM (no vCPUs) on the edge agent at ADDR: a memory edge the home spills\n"
    "            its oldest pages to when over its allowance (home-memory); a guest started with\n"
    "            --max-memory grows by it (ACPI memory hotplug) and gives it back when the edge leaves\n"
    "  home-memory SIZE|off\n"
    "            keep at most SIZE of guest RAM at home from now on, the rest on the memory edges\n"
    "            (refused unless they can hold it); off: no limit\n"
    "  detach ADDR|NODE\n"
    "            the edge's vCPUs move home, its pages follow, its runtime leaves (the guest runs on)\n"
    "  setvcpus N\n"
    "            plug in absent vCPUs or ask the guest to give up present ones until N are present\n"
    "            (ACPI CPU hotplug; the VM must have started with --max-vcpus; docs/HOTPLUG.md)\n"
    "  setmemory SIZE\n"
    "            plug in 128M memory slots or ask the guest to give up plugged ones until it has SIZE\n"
    "            of RAM (ACPI memory hotplug; the VM must have started with --max-memory)\n"
    "  suspend   pause the guest: every vCPU on every node stops where it is until `resume`\n"
    "  resume    let a paused guest run again\n"
    "  link NODE SPEC\n"
    "            change the emulated link from the home to edge NODE while the guest runs (SPEC as\n"
    "            `coalesce run --link`, e.g. latency=20ms; the VM must have started with --link)\n"
    "commands to an edge agent (its operator's):\n"
    "  leases    every VM hosted there: state, vCPUs, memory, how long its lease runs\n"
    "  revoke VM_ID\n"
    "            end that VM's lease now: its vCPUs and pages go home, the guest runs on\n"
    "\n"
    "--timeout SECONDS: how long to wait for the answer (default 120).\n"
    "exit status: 0 answered; 2 bad usage, no such VM, the VM refused the command or closed the connection\n"
    "without an answer; 8 no answer in time.\n";

}  // namespace

int CtlCommand(const std::vector<std::string>& args) {
  std::string vm, socket;
  // Longer than the VM's own bound on any command (an attach's runtime start, 30 s; setvcpus, 30 s for each CPU
  // the guest ejects: docs/COALESCENCE.md): an answer later than this means the VM is stuck.
  double timeout_s = 120;
  bool help = false;
  std::vector<std::string> words;  // the command and its arguments, one line to the VM
  FlagParser flags;
  flags.Switch("--help", &help)
      .Alias("-h", "--help")
      .Value("--vm", StoreText(&vm))
      .Value("--socket", StoreText(&socket))
      .Value("--timeout", StoreSeconds(&timeout_s, 0.001, 86400))
      .Positional(&words);
  if (auto done = ParseCommandLine(flags, args, help, "coalesce ctl", kCtlUsage, exit_status::kUsage)) return *done;
  const std::string command = absl::StrJoin(words, " ");
  if (vm.empty() == socket.empty() || command.empty()) {
    std::fprintf(stderr, "coalesce ctl: give --vm NAME or --socket PATH, and a command\n\n%s", kCtlUsage);
    return exit_status::kUsage;
  }
  if (!vm.empty()) {
    if (absl::Status st = ValidateVmName(vm); !st.ok()) {
      std::fprintf(stderr, "coalesce ctl: --vm: %s\n", std::string(st.message()).c_str());
      return exit_status::kUsage;
    }
  }
  const std::string who = vm.empty() ? socket : "VM '" + vm + "'";
  absl::StatusOr<std::string> reply =
      CallControl(vm.empty() ? socket : ControlSocketPath(vm), command, absl::Seconds(timeout_s));
  if (!reply.ok()) {
    std::fprintf(stderr, "coalesce ctl: %s: %s\n", who.c_str(), std::string(reply.status().message()).c_str());
    return reply.status().code() == absl::StatusCode::kDeadlineExceeded ? exit_status::kHostFailure
                                                                        : exit_status::kUsage;
  }
  if (absl::StartsWith(*reply, "error:")) {
    std::fprintf(stderr, "coalesce ctl: %s: %s", who.c_str(), reply->c_str());
    return exit_status::kUsage;
  }
  std::fputs(reply->c_str(), stdout);
  return 0;
}

}  // namespace coalesce
