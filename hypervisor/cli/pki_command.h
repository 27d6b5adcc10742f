// `coalesce pki`: a throwaway or site CA for the control plane's mutual TLS, and node certificates from it
// (edge_monitor/pki.h does the cryptography). docs/SECURITY.md shows the equivalent openssl commands.
#pragma once

#include <string>
#include <vector>

namespace coalesce {

// Returns the process exit status: 0, or 2 with the reason on stderr.
int PkiCommand(const std::vector<std::string>& args);

}  // namespace coalesce
