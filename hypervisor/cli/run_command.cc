#include "hypervisor/cli/run_command.h"

#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"

#include "hypervisor/base/log.h"
#include "hypervisor/cli/run_options.h"
#include "hypervisor/cli/signal_stopper.h"
#include "hypervisor/machine/machine.h"
#include "hypervisor/vcpu/exit_status.h"

namespace coalesce {

int RunCommand(const std::vector<std::string>& args) {
  absl::StatusOr<RunOptions> parsed = ParseRunOptions(args);
  if (!parsed.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(parsed.status().message()).c_str());
    return exit_status::kUsage;
  }
  RunOptions options = *std::move(parsed);
  if (options.help) {
    std::fputs(kRunUsage, stdout);
    return 0;
  }
  if (!options.log_level.empty()) {
    LogLevel level;
    if (!ParseLogLevel(options.log_level, &level)) {
      std::fprintf(stderr, "coalesce run: --log-level: '%s' is not one of debug, info, warning, error\n",
                   options.log_level.c_str());
      return exit_status::kUsage;
    }
    SetLogLevel(level);
  }
  if (absl::Status st = ValidateRunOptions(options); !st.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(st.message()).c_str());
    return exit_status::kUsage;
  }
  MachineConfig config;
  config.kernel_path = options.kernel;
  config.initrd_path = options.initrd;
  config.cmdline = options.append;
  config.vcpus = options.vcpus;
  config.memory = options.memory;
  // Before any thread exists, so every thread inherits the mask and only the stopper sees them.
  BlockStopSignals();
  absl::StatusOr<std::unique_ptr<Machine>> machine = Machine::Create(config);
  if (!machine.ok()) {
    std::fprintf(stderr, "coalesce run: %s\n", std::string(machine.status().message()).c_str());
    // Input problems (files, sizes, formats) are usage errors; anything else is the host's.
    absl::StatusCode c = machine.status().code();
    bool input = c == absl::StatusCode::kInvalidArgument || c == absl::StatusCode::kNotFound ||
                 c == absl::StatusCode::kOutOfRange || c == absl::StatusCode::kFailedPrecondition;
    return input ? exit_status::kUsage : exit_status::kHostFailure;
  }
  Machine& vm = **machine;
  int status;
  {
    SignalStopper stopper([&vm](int sig) {
      vm.RequestStop(exit_status::kHostFailure, absl::StrFormat("stopped by signal %d (%s)", sig, strsignal(sig)));
    });
    status = vm.Run();
  }
  std::fflush(stdout);
  std::fprintf(stderr, "coalesce: %s (exit status %d)\n", (*machine)->run_control().reason().c_str(), status);
  if (options.print_stats) std::fputs(vm.StatsReport().c_str(), stderr);
  return status;
}

}  // namespace coalesce
