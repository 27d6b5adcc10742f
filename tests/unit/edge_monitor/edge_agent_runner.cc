// Stands in for the CLI's main() in tests: `edge_agent_runner edge FLAGS...` runs RunEdgeAgentMain exactly as
// `coalesce edge FLAGS...` will.
#include "edge_monitor/edge_agent_main.h"

int main(int argc, char** argv) { return argc < 2 ? 2 : coalesce::RunEdgeAgentMain(argc - 1, argv + 1); }
