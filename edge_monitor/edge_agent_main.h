// Entry point of `coalesce edge`, called by the CLI's main() for that subcommand.
#pragma once

namespace coalesce {

// argv[0] is the subcommand's name ("edge"); the flags follow (see edge_agent_flags.h). Serves until SIGINT or
// SIGTERM, then stops every hosted VM. Returns the process exit status: 0 after a signal or --help, 2 for a usage
// error, 1 if the agent cannot start (e.g. the address is in use). Must be called before the process starts other
// threads: it blocks SIGINT and SIGTERM in the calling thread so that every gRPC thread inherits the mask.
int RunEdgeAgentMain(int argc, char** argv);

}  // namespace coalesce
