#include "hypervisor/daemon/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "hypervisor/base/status_macros.h"
#include "edge_monitor/vcpu_list.h"
#include "hypervisor/base/control_socket.h"

namespace coalesce::daemon {
namespace {

constexpr uint64_t kMinMemoryKib = 16 * 1024;

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using DocPtr = std::unique_ptr<xmlDoc, DocFree>;

std::string Name(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

absl::Status ErrorAt(const xmlNode* n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", xmlGetLineNo(n), ": <", Name(n), ">: ", what));
}

std::string Text(const xmlNode* n) {
  xmlChar* c = xmlNodeGetContent(n);
  std::string s = c ? reinterpret_cast<const char*>(c) : "";
  xmlFree(c);
  return std::string(absl::StripAsciiWhitespace(s));
}

std::string Attr(const xmlNode* n, const char* name) {
  xmlChar* c = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  std::string s = c ? reinterpret_cast<const char*>(c) : "";
  xmlFree(c);
  return s;
}

bool HasAttr(const xmlNode* n, const char* name) {
  return xmlHasProp(n, reinterpret_cast<const xmlChar*>(name)) != nullptr;
}

template <typename F>
absl::Status ForEachElement(const xmlNode* parent, F f) {
  for (const xmlNode* c = parent->children; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (absl::Status st = f(c); !st.ok()) return st;
  }
  return absl::OkStatus();
}

bool InOurNamespace(const xmlNode* n) {
  return n->ns != nullptr && n->ns->href != nullptr &&
         std::string(reinterpret_cast<const char*>(n->ns->href)) == kCoalesceXmlNamespace;
}

absl::StatusOr<uint64_t> ParseU64(const xmlNode* n, const std::string& text) {
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
    return ErrorAt(n, absl::StrCat("'", text, "' is not a number"));
  }
  return v;
}

// libvirt's memory units: bytes, k/KiB (default), KB, M/MiB, MB, G/GiB, GB, T/TiB, TB.
absl::StatusOr<uint64_t> ParseMemoryKib(const xmlNode* n) {
  auto value = ParseU64(n, Text(n));
  if (!value.ok()) return value.status();
  std::string unit = HasAttr(n, "unit") ? Attr(n, "unit") : "KiB";
  struct U {
    const char* name;
    uint64_t bytes;
  };
  static constexpr U kUnits[] = {{"b", 1},          {"bytes", 1},        {"k", 1024},          {"KiB", 1024},
                                 {"KB", 1000},      {"M", 1 << 20},      {"MiB", 1 << 20},     {"MB", 1000000},
                                 {"G", 1ULL << 30}, {"GiB", 1ULL << 30}, {"GB", 1000000000},   {"T", 1ULL << 40},
                                 {"TiB", 1ULL << 40}, {"TB", 1000000000000ULL}};
  for (const U& u : kUnits) {
    if (unit == u.name) {
      if (*value > (UINT64_MAX / u.bytes)) return ErrorAt(n, "memory size overflows");
      return *value * u.bytes / 1024;
    }
  }
  return ErrorAt(n, absl::StrCat("unit '", unit, "' is not one of b, KiB, KB, MiB, MB, GiB, GB, TiB, TB"));
}

absl::Status ParseOs(const xmlNode* os, DomainDefinition& def) {
  bool have_type = false;
  absl::Status st = ForEachElement(os, [&](const xmlNode* c) -> absl::Status {
    const std::string name = Name(c);
    if (name == "type") {
      if (Text(c) != "hvm") return ErrorAt(c, absl::StrCat("OS type '", Text(c), "' is not supported (only hvm)"));
      if (HasAttr(c, "arch") && Attr(c, "arch") != "x86_64") {
        return ErrorAt(c, absl::StrCat("arch '", Attr(c, "arch"), "' is not supported (only x86_64)"));
      }
      have_type = true;
    } else if (name == "kernel" || name == "initrd") {
      // Absolute: the guest is started by the daemon, whose working directory is not the client's.
      const std::string path = Text(c);
      if (path.empty() || path[0] != '/') return ErrorAt(c, absl::StrCat("'", path, "' is not an absolute path"));
      (name == "kernel" ? def.kernel : def.initrd) = path;
    } else if (name == "cmdline") {
      def.cmdline = Text(c);
    } else if (name == "boot") {
      return ErrorAt(c, "booting from a disk is not supported: give <kernel>");
    } else {
      return ErrorAt(c, "unsupported element");
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (!have_type) return ErrorAt(os, "missing <type>hvm</type>");
  if (def.kernel.empty()) return ErrorAt(os, "missing <kernel>: Coalesce boots a kernel image directly");
  return absl::OkStatus();
}

absl::Status ParseDisk(const xmlNode* disk, DomainDefinition& def) {
  if (HasAttr(disk, "type") && Attr(disk, "type") != "file") {
    return ErrorAt(disk, absl::StrCat("type '", Attr(disk, "type"), "' is not supported (only file)"));
  }
  if (HasAttr(disk, "device") && Attr(disk, "device") != "disk") {
    return ErrorAt(disk, absl::StrCat("device '", Attr(disk, "device"), "' is not supported (only disk)"));
  }
  DiskDefinition d;
  RETURN_IF_ERROR(ForEachElement(disk, [&](const xmlNode* c) -> absl::Status {
    const std::string name = Name(c);
    if (name == "driver") {
      if (HasAttr(c, "name") && Attr(c, "name") != "qemu") return ErrorAt(c, "only name='qemu' (qemu-storage-daemon)");
      d.format = Attr(c, "type");
      if (!d.format.empty() && d.format != "qcow2" && d.format != "raw") {
        return ErrorAt(c, absl::StrCat("type '", d.format, "' is not supported (qcow2 or raw)"));
      }
    } else if (name == "source") {
      d.file = Attr(c, "file");
      if (d.file.empty() || d.file[0] != '/') return ErrorAt(c, "needs file='/absolute/path'");
      if (d.file.find(',') != std::string::npos) return ErrorAt(c, "a ',' in the file name is not supported");
    } else if (name == "target") {
      d.target = Attr(c, "dev");
      if (HasAttr(c, "bus") && Attr(c, "bus") != "virtio") return ErrorAt(c, "only bus='virtio'");
    } else if (name == "readonly") {
      d.readonly = true;
    } else {
      return ErrorAt(c, "unsupported element");
    }
    return absl::OkStatus();
  }));
  if (d.file.empty()) return ErrorAt(disk, "missing <source file='...'/>");
  if (d.target.size() != 3 || d.target.rfind("vd", 0) != 0 || d.target[2] < 'a' || d.target[2] > 'h') {
    return ErrorAt(disk, absl::StrCat("target dev '", d.target, "': vda to vdh"));
  }
  for (const DiskDefinition& other : def.disks) {
    if (other.target == d.target) return ErrorAt(disk, absl::StrCat("target '", d.target, "' is used twice"));
  }
  def.disks.push_back(std::move(d));
  return absl::OkStatus();
}

absl::Status ParseInterface(const xmlNode* iface, DomainDefinition& def) {
  if (Attr(iface, "type") != "ethernet") {
    return ErrorAt(iface, absl::StrCat("type '", Attr(iface, "type"), "' is not supported (only ethernet: a TAP)"));
  }
  InterfaceDefinition n;
  RETURN_IF_ERROR(ForEachElement(iface, [&](const xmlNode* c) -> absl::Status {
    const std::string name = Name(c);
    if (name == "target") {
      n.tap = Attr(c, "dev");
      if (HasAttr(c, "managed") && Attr(c, "managed") != "no") {
        return ErrorAt(c, "only managed='no': the TAP interface must exist");
      }
    } else if (name == "mac") {
      n.mac = Attr(c, "address");
    } else if (name == "model") {
      if (Attr(c, "type") != "virtio") return ErrorAt(c, absl::StrCat("model '", Attr(c, "type"), "' (only virtio)"));
    } else {
      return ErrorAt(c, "unsupported element");
    }
    return absl::OkStatus();
  }));
  if (n.tap.empty()) return ErrorAt(iface, "missing <target dev='TAP'/>");
  if (n.tap.find_first_of(",=") != std::string::npos || n.mac.find_first_of(",=") != std::string::npos) {
    return ErrorAt(iface, "',' and '=' are not allowed in the TAP name or MAC");
  }
  def.interfaces.push_back(std::move(n));
  return absl::OkStatus();
}

absl::Status ParseDevices(const xmlNode* devices, DomainDefinition& def) {
  RETURN_IF_ERROR(ForEachElement(devices, [&](const xmlNode* c) -> absl::Status {
    const std::string name = Name(c);
    if (name == "emulator") return absl::OkStatus();  // the daemon always runs its own `coalesce`
    if (name == "disk") return ParseDisk(c, def);
    if (name == "interface") return ParseInterface(c, def);
    if (name == "serial" || name == "console") {
      if (HasAttr(c, "type") && Attr(c, "type") != "pty") {
        return ErrorAt(c, absl::StrCat("type '", Attr(c, "type"), "' is not supported (only pty: COM1)"));
      }
      return ForEachElement(c, [&](const xmlNode* t) -> absl::Status {
        if (Name(t) != "target") return ErrorAt(t, "unsupported element");
        if (HasAttr(t, "port") && Attr(t, "port") != "0") return ErrorAt(t, "only port 0 (COM1) exists");
        if (HasAttr(t, "type") && Attr(t, "type") != "serial") return ErrorAt(t, "only a serial console exists");
        return absl::OkStatus();
      });
    }
    return ErrorAt(c, "unsupported device");
  }));
  // Coalesce names disks in order (vda is the first --disk): the targets must be vda, vdb, ... without gaps.
  std::sort(def.disks.begin(), def.disks.end(),
            [](const DiskDefinition& a, const DiskDefinition& b) { return a.target < b.target; });
  for (size_t i = 0; i < def.disks.size(); ++i) {
    const std::string want = std::string("vd") + static_cast<char>('a' + i);
    if (def.disks[i].target != want) {
      return ErrorAt(devices, absl::StrCat("disk target '", def.disks[i].target, "' without '", want,
                                           "': targets must be vda, vdb, ... in order"));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseCoalescence(const xmlNode* node, DomainDefinition& def) {
  return ForEachElement(node, [&](const xmlNode* c) -> absl::Status {
    if (!InOurNamespace(c)) return ErrorAt(c, "unsupported element in the coalescence metadata");
    const std::string name = Name(c);
    if (name == "profile") {
      def.profile = Attr(c, "file");
      if (def.profile.empty()) return ErrorAt(c, "missing file='...'");
    } else if (name == "edge") {
      EdgePlacement e{Attr(c, "address"), Attr(c, "vcpus")};
      if (e.address.empty() || e.vcpus.empty()) return ErrorAt(c, "needs address='host:port' and vcpus='LIST'");
      if (e.address.find('=') != std::string::npos) return ErrorAt(c, "address holds '='");
      def.edges.push_back(std::move(e));
    } else if (name == "data-plane") {
      def.data_plane = Attr(c, "address");
      if (def.data_plane.empty()) return ErrorAt(c, "missing address='host:port'");
    } else {
      return ErrorAt(c, "unsupported element");
    }
    return absl::OkStatus();
  });
}

absl::Status ParseCpu(const xmlNode* cpu, DomainDefinition& def) {
  const std::string mode = Attr(cpu, "mode");
  if (mode == "host-passthrough") {
    def.cpu_mode = "host";
    return absl::OkStatus();
  }
  if (mode == "custom" || mode.empty()) {
    std::string model;
    absl::Status st = ForEachElement(cpu, [&](const xmlNode* c) -> absl::Status {
      if (Name(c) != "model") return ErrorAt(c, "unsupported element");
      model = Text(c);
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    if (model != "baseline") return ErrorAt(cpu, "the only custom CPU model is 'baseline'");
    def.cpu_mode = "baseline";
    return absl::OkStatus();
  }
  return ErrorAt(cpu, absl::StrCat("mode '", mode, "' is not supported (host-passthrough, or custom 'baseline')"));
}

absl::Status ParseDomain(const xmlNode* root, DomainDefinition& def, bool generate_uuid) {
  if (Name(root) != "domain") return ErrorAt(root, "the root element must be <domain>");
  const std::string type = Attr(root, "type");
  if (type != "kvm") return ErrorAt(root, absl::StrCat("domain type '", type, "' is not supported (only kvm)"));
  bool have_uuid = false, have_memory = false, have_os = false;
  absl::Status st = ForEachElement(root, [&](const xmlNode* c) -> absl::Status {
    const std::string name = Name(c);
    if (name == "name") {
      def.name = Text(c);
      if (absl::Status v = ValidateDomainName(def.name); !v.ok()) return ErrorAt(c, std::string(v.message()));
    } else if (name == "uuid") {
      auto u = ParseUuid(Text(c));
      if (!u.ok()) return ErrorAt(c, std::string(u.status().message()));
      def.uuid = *u;
      have_uuid = true;
    } else if (name == "title") {
      def.title = Text(c);
    } else if (name == "description") {
      def.description = Text(c);
    } else if (name == "memory" || name == "currentMemory") {
      auto kib = ParseMemoryKib(c);
      if (!kib.ok()) return kib.status();
      if (*kib < kMinMemoryKib) return ErrorAt(c, "at least 16 MiB of memory is needed");
      if (name == "memory") {
        def.memory_kib = *kib;
        have_memory = true;
      } else if (have_memory && *kib != def.memory_kib) {
        return ErrorAt(c, "memory ballooning is not supported: currentMemory must equal memory");
      }
    } else if (name == "vcpu") {
      auto n = ParseU64(c, Text(c));
      if (!n.ok()) return n.status();
      if (*n < 1 || *n > kMaxVcpuCount) return ErrorAt(c, absl::StrCat("'", *n, "' is not a vCPU count of 1-255"));
      def.vcpus = static_cast<uint32_t>(*n);
      if (HasAttr(c, "current")) {
        auto current = ParseU64(c, Attr(c, "current"));
        if (!current.ok()) return current.status();
        if (*current < 1 || *current > *n) {
          return ErrorAt(c, absl::StrCat("current='", *current, "' is not a vCPU count of 1-", *n, " (the maximum)"));
        }
        def.current_vcpus = *current < *n ? static_cast<uint32_t>(*current) : 0;
      }
    } else if (name == "os") {
      if (absl::Status s = ParseOs(c, def); !s.ok()) return s;
      have_os = true;
    } else if (name == "devices") {
      return ParseDevices(c, def);
    } else if (name == "cpu") {
      return ParseCpu(c, def);
    } else if (name == "features") {
      return ForEachElement(c, [&](const xmlNode* f) -> absl::Status {
        const std::string fn = Name(f);
        if (fn == "acpi" || fn == "apic" || fn == "pae") return absl::OkStatus();  // always present
        return ErrorAt(f, "unsupported feature");
      });
    } else if (name == "clock") {
      if (HasAttr(c, "offset") && Attr(c, "offset") != "utc") return ErrorAt(c, "only offset='utc' is supported");
    } else if (name == "on_poweroff" || name == "on_crash") {
      if (Text(c) != "destroy") return ErrorAt(c, absl::StrCat("'", Text(c), "' is not supported (only destroy)"));
    } else if (name == "on_reboot") {
      if (Text(c) != "restart") return ErrorAt(c, absl::StrCat("'", Text(c), "' is not supported (only restart)"));
    } else if (name == "metadata") {
      return ForEachElement(c, [&](const xmlNode* m) -> absl::Status {
        if (InOurNamespace(m) && Name(m) == "coalescence") return ParseCoalescence(m, def);
        return ErrorAt(m, absl::StrCat("unknown metadata (expected <coalescence xmlns=\"", kCoalesceXmlNamespace,
                                       "\">)"));
      });
    } else {
      return ErrorAt(c, "unsupported element");
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (def.name.empty()) return ErrorAt(root, "missing <name>");
  if (!have_memory) return ErrorAt(root, "missing <memory>");
  if (!have_os) return ErrorAt(root, "missing <os> with <kernel>");
  if (!have_uuid) {
    if (!generate_uuid) return ErrorAt(root, "missing <uuid>");
    def.uuid = RandomUuid();
  }
  return absl::OkStatus();
}

void AddText(xmlNode* parent, const char* name, const std::string& text) {
  xmlNewTextChild(parent, nullptr, reinterpret_cast<const xmlChar*>(name),
                  reinterpret_cast<const xmlChar*>(text.c_str()));
}
void SetAttr(xmlNode* n, const char* name, const std::string& value) {
  xmlSetProp(n, reinterpret_cast<const xmlChar*>(name), reinterpret_cast<const xmlChar*>(value.c_str()));
}
xmlNode* AddChild(xmlNode* parent, const char* name, xmlNs* ns = nullptr) {
  return xmlNewChild(parent, ns, reinterpret_cast<const xmlChar*>(name), nullptr);
}

}  // namespace

absl::Status ValidateDomainName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("a domain name must not be empty");
  if (name.size() > 200) return absl::InvalidArgumentError("a domain name is at most 200 characters");
  if (name[0] == '.' || name[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("domain name '", name, "' starts with '", name.substr(0, 1), "'"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.' && c != '+') {
      return absl::InvalidArgumentError(
          absl::StrCat("domain name '", name, "' holds '", std::string(1, c), "' (use letters, digits, - _ . +)"));
    }
  }
  return absl::OkStatus();
}

std::string FormatUuid(const Uuid& u) {
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                         u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

absl::StatusOr<Uuid> ParseUuid(const std::string& text) {
  Uuid u{};
  size_t i = 0;
  for (char c : text) {
    if (c == '-') continue;
    int v = absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : (c >= 'a' && c <= 'f')                            ? c - 'a' + 10
            : (c >= 'A' && c <= 'F')                            ? c - 'A' + 10
                                                                : -1;
    if (v < 0 || i >= 32) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a UUID"));
    u[i / 2] = static_cast<uint8_t>(u[i / 2] | (i % 2 == 0 ? v << 4 : v));
    ++i;
  }
  if (i != 32) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a UUID"));
  return u;
}

Uuid RandomUuid() {
  Uuid u{};
  std::ifstream("/dev/urandom", std::ios::binary).read(reinterpret_cast<char*>(u.data()), u.size());
  u[6] = static_cast<uint8_t>((u[6] & 0x0f) | 0x40);  // version 4
  u[8] = static_cast<uint8_t>((u[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return u;
}

absl::StatusOr<DomainDefinition> ParseDomainXml(const std::string& xml, bool generate_uuid) {
  DocPtr doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS));
  if (!doc) {
    const xmlError* e = xmlGetLastError();
    std::string msg = e && e->message ? std::string(absl::StripAsciiWhitespace(e->message)) : "not XML";
    return absl::InvalidArgumentError(absl::StrCat("line ", e ? e->line : 0, ": malformed XML: ", msg));
  }
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr) return absl::InvalidArgumentError("line 1: empty XML document");
  DomainDefinition def;
  if (absl::Status st = ParseDomain(root, def, generate_uuid); !st.ok()) return st;
  return def;
}

std::string FormatDomainXml(const DomainDefinition& def, int id) {
  DocPtr doc(xmlNewDoc(reinterpret_cast<const xmlChar*>("1.0")));
  xmlNode* root = xmlNewNode(nullptr, reinterpret_cast<const xmlChar*>("domain"));
  xmlDocSetRootElement(doc.get(), root);
  SetAttr(root, "type", "kvm");
  if (id >= 0) SetAttr(root, "id", std::to_string(id));
  AddText(root, "name", def.name);
  AddText(root, "uuid", FormatUuid(def.uuid));
  if (!def.title.empty()) AddText(root, "title", def.title);
  if (!def.description.empty()) AddText(root, "description", def.description);
  if (!def.profile.empty() || !def.edges.empty() || !def.data_plane.empty()) {
    xmlNode* metadata = AddChild(root, "metadata");
    xmlNode* c = AddChild(metadata, "coalescence");
    xmlNs* ns = xmlNewNs(c, reinterpret_cast<const xmlChar*>(kCoalesceXmlNamespace),
                         reinterpret_cast<const xmlChar*>("coalesce"));
    xmlSetNs(c, ns);
    if (!def.profile.empty()) SetAttr(AddChild(c, "profile", ns), "file", def.profile);
    for (const EdgePlacement& e : def.edges) {
      xmlNode* n = AddChild(c, "edge", ns);
      SetAttr(n, "address", e.address);
      SetAttr(n, "vcpus", e.vcpus);
    }
    if (!def.data_plane.empty()) SetAttr(AddChild(c, "data-plane", ns), "address", def.data_plane);
  }
  xmlNode* memory = xmlNewTextChild(root, nullptr, reinterpret_cast<const xmlChar*>("memory"),
                                    reinterpret_cast<const xmlChar*>(std::to_string(def.memory_kib).c_str()));
  SetAttr(memory, "unit", "KiB");
  xmlNode* vcpu = xmlNewTextChild(root, nullptr, reinterpret_cast<const xmlChar*>("vcpu"),
                                  reinterpret_cast<const xmlChar*>(std::to_string(def.vcpus).c_str()));
  SetAttr(vcpu, "placement", "static");
  if (BootVcpus(def) < def.vcpus) SetAttr(vcpu, "current", std::to_string(BootVcpus(def)));
  xmlNode* os = AddChild(root, "os");
  xmlNode* type = xmlNewTextChild(os, nullptr, reinterpret_cast<const xmlChar*>("type"),
                                  reinterpret_cast<const xmlChar*>("hvm"));
  SetAttr(type, "arch", "x86_64");
  AddText(os, "kernel", def.kernel);
  if (!def.initrd.empty()) AddText(os, "initrd", def.initrd);
  if (!def.cmdline.empty()) AddText(os, "cmdline", def.cmdline);
  if (def.cpu_mode == "host") {
    SetAttr(AddChild(root, "cpu"), "mode", "host-passthrough");
  } else if (def.cpu_mode == "baseline") {
    xmlNode* cpu = AddChild(root, "cpu");
    SetAttr(cpu, "mode", "custom");
    AddText(cpu, "model", "baseline");
  }
  AddText(root, "on_poweroff", "destroy");
  AddText(root, "on_reboot", "restart");
  AddText(root, "on_crash", "destroy");
  xmlNode* devices = AddChild(root, "devices");
  for (const DiskDefinition& d : def.disks) {
    xmlNode* disk = AddChild(devices, "disk");
    SetAttr(disk, "type", "file");
    SetAttr(disk, "device", "disk");
    xmlNode* driver = AddChild(disk, "driver");
    SetAttr(driver, "name", "qemu");
    if (!d.format.empty()) SetAttr(driver, "type", d.format);
    SetAttr(AddChild(disk, "source"), "file", d.file);
    xmlNode* target = AddChild(disk, "target");
    SetAttr(target, "dev", d.target);
    SetAttr(target, "bus", "virtio");
    if (d.readonly) AddChild(disk, "readonly");
  }
  for (const InterfaceDefinition& n : def.interfaces) {
    xmlNode* iface = AddChild(devices, "interface");
    SetAttr(iface, "type", "ethernet");
    if (!n.mac.empty()) SetAttr(AddChild(iface, "mac"), "address", n.mac);
    xmlNode* target = AddChild(iface, "target");
    SetAttr(target, "dev", n.tap);
    SetAttr(target, "managed", "no");
    SetAttr(AddChild(iface, "model"), "type", "virtio");
  }
  xmlNode* serial = AddChild(devices, "serial");
  SetAttr(serial, "type", "pty");
  SetAttr(AddChild(serial, "target"), "port", "0");
  xmlNode* console = AddChild(devices, "console");
  SetAttr(console, "type", "pty");
  xmlNode* target = AddChild(console, "target");
  SetAttr(target, "type", "serial");
  SetAttr(target, "port", "0");

  xmlChar* out = nullptr;
  int size = 0;
  xmlDocDumpFormatMemoryEnc(doc.get(), &out, &size, "UTF-8", 1);
  std::string text(reinterpret_cast<const char*>(out), static_cast<size_t>(size));
  xmlFree(out);
  // virsh prints the document as it comes: drop the XML declaration as libvirt does.
  if (text.rfind("<?xml", 0) == 0) text.erase(0, text.find('\n') + 1);
  return text;
}

std::string VmNameOf(const DomainDefinition& def) {
  return ValidateVmName(def.name).ok() ? def.name : "domain-" + FormatUuid(def.uuid);
}

std::vector<std::string> RunArguments(const DomainDefinition& def) {
  std::vector<std::string> args = {"run",      "--name",   VmNameOf(def), "--kernel", def.kernel,
                                   "--vcpus",  std::to_string(BootVcpus(def)),
                                   "--memory", std::to_string(def.memory_kib * 1024)};
  if (BootVcpus(def) < def.vcpus) args.insert(args.end(), {"--max-vcpus", std::to_string(def.vcpus)});
  if (!def.initrd.empty()) args.insert(args.end(), {"--initrd", def.initrd});
  if (!def.cmdline.empty()) args.insert(args.end(), {"--append", def.cmdline});
  if (!def.cpu_mode.empty()) args.insert(args.end(), {"--cpu", def.cpu_mode});
  for (const DiskDefinition& d : def.disks) {
    std::string spec = d.file;
    if (!d.format.empty()) spec += ",format=" + d.format;
    if (d.readonly) spec += ",readonly=on";
    args.insert(args.end(), {"--disk", spec});
  }
  for (const InterfaceDefinition& n : def.interfaces) {
    args.insert(args.end(), {"--net", "tap=" + n.tap + (n.mac.empty() ? "" : ",mac=" + n.mac)});
  }
  if (!def.profile.empty()) args.insert(args.end(), {"--profile", def.profile});
  for (const EdgePlacement& e : def.edges) args.insert(args.end(), {"--edge", e.address + "=" + e.vcpus});
  if (!def.data_plane.empty()) args.insert(args.end(), {"--data-plane", def.data_plane});
  return args;
}

}  // namespace coalesce::daemon
