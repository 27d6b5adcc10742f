// Domain XML: what libvirt users write is read, the normalized form reads back the same, and what the daemon
// cannot honour is refused naming the element and line.
#include "hypervisor/daemon/domain_xml.h"

#include <catch2/catch.hpp>
#include <algorithm>

using namespace coalesce::daemon;

namespace {
const char kFull[] = R"(<domain type='kvm'>
  <name>demo</name>
  <uuid>0f8fad5b-d9cb-469f-a165-70867728950e</uuid>
  <memory unit='MiB'>512</memory>
  <currentMemory unit='MiB'>512</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>/boot/vmlinuz</kernel>
    <initrd>/boot/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <metadata>
    <coalesce:coalescence xmlns:coalesce="https://coalesce.dev/xmlns/domain/1">
      <coalesce:edge address="10.0.0.2:7000" vcpus="2-3"/>
      <coalesce:data-plane address="10.0.0.1:0"/>
    </coalesce:coalescence>
  </metadata>
  <devices>
    <emulator>/usr/bin/coalesce</emulator>
    <disk type='file' device='disk'>
      <source file='/var/lib/ro.img'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='52:54:00:aa:bb:cc'/>
      <target dev='ctap0' managed='no'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
)";
}  // namespace

TEST_CASE("a full definition is read") {
  auto d = ParseDomainXml(kFull);
  REQUIRE(d.ok());
  CHECK(d->name == "demo");
  CHECK(FormatUuid(d->uuid) == "0f8fad5b-d9cb-469f-a165-70867728950e");
  CHECK(d->memory_kib == 512 * 1024);
  CHECK(d->vcpus == 4);
  CHECK(d->kernel == "/boot/vmlinuz");
  CHECK(d->initrd == "/boot/initrd.img");
  CHECK(d->cmdline == "console=ttyS0 quiet");
  REQUIRE(d->edges.size() == 1);
  CHECK(d->edges[0].address == "10.0.0.2:7000");
  CHECK(d->edges[0].vcpus == "2-3");
  CHECK(d->data_plane == "10.0.0.1:0");
  REQUIRE(d->disks.size() == 2);  // in target order
  CHECK((d->disks[0].file == "/var/lib/a.qcow2" && d->disks[0].format == "qcow2" && !d->disks[0].readonly));
  CHECK((d->disks[1].file == "/var/lib/ro.img" && d->disks[1].format.empty() && d->disks[1].readonly));
  REQUIRE(d->interfaces.size() == 1);
  CHECK((d->interfaces[0].tap == "ctap0" && d->interfaces[0].mac == "52:54:00:aa:bb:cc"));
}

TEST_CASE("the normalized XML reads back to the same definition and the run arguments follow it") {
  auto d = ParseDomainXml(kFull);
  REQUIRE(d.ok());
  std::string xml = FormatDomainXml(*d);
  CHECK(xml.rfind("<domain type=\"kvm\">", 0) == 0);
  auto again = ParseDomainXml(xml, /*generate_uuid=*/false);
  REQUIRE(again.ok());
  CHECK(FormatDomainXml(*again) == xml);
  std::vector<std::string> args = RunArguments(*again);
  CHECK(args == std::vector<std::string>{"run", "--name", "demo", "--kernel", "/boot/vmlinuz", "--vcpus", "4", "--memory",
                                         "536870912", "--initrd", "/boot/initrd.img", "--append",
                                         "console=ttyS0 quiet", "--disk", "/var/lib/a.qcow2,format=qcow2", "--disk",
                                         "/var/lib/ro.img,readonly=on", "--net", "tap=ctap0,mac=52:54:00:aa:bb:cc",
                                         "--edge", "10.0.0.2:7000=2-3", "--data-plane",
                                         "10.0.0.1:0"});
}

TEST_CASE("<vcpu current='N'>: N at boot, the rest hot-pluggable (--max-vcpus)") {
  const std::string head = "<domain type='kvm'><name>hp</name><memory>65536</memory>";
  const std::string os = "<os><type>hvm</type><kernel>/k</kernel></os></domain>";
  auto d = ParseDomainXml(head + "<vcpu current='1'>3</vcpu>" + os);
  REQUIRE(d.ok());
  CHECK(d->vcpus == 3);
  CHECK(BootVcpus(*d) == 1);
  const std::vector<std::string> args = RunArguments(*d);
  auto value_of = [](const std::vector<std::string>& a, const std::string& flag) {
    auto it = std::find(a.begin(), a.end(), flag);
    return it != a.end() && it + 1 != a.end() ? *(it + 1) : std::string("(none)");
  };
  CHECK(value_of(args, "--vcpus") == "1");
  CHECK(value_of(args, "--max-vcpus") == "3");
  const std::string xml = FormatDomainXml(*d);
  CHECK_THAT(xml, Catch::Contains("<vcpu placement=\"static\" current=\"1\">3</vcpu>"));
  auto again = ParseDomainXml(xml, /*generate_uuid=*/false);
  REQUIRE(again.ok());
  CHECK(BootVcpus(*again) == 1);
  // current equal to the maximum is the plain form; out of range is refused naming it.
  auto full = ParseDomainXml(head + "<vcpu current='3'>3</vcpu>" + os);
  REQUIRE(full.ok());
  CHECK(BootVcpus(*full) == 3);
  CHECK(value_of(RunArguments(*full), "--max-vcpus") == "(none)");
  CHECK_THAT(std::string(ParseDomainXml(head + "<vcpu current='4'>3</vcpu>" + os).status().message()),
             Catch::Contains("current='4'"));
  CHECK(!ParseDomainXml(head + "<vcpu current='0'>3</vcpu>" + os).ok());
  // A domain name that is not a VM name runs under one made from its UUID.
  auto plus = ParseDomainXml("<domain type='kvm'><name>a+b</name><memory>65536</memory><vcpu>1</vcpu>" + os);
  REQUIRE(plus.ok());
  CHECK(VmNameOf(*plus) == "domain-" + FormatUuid(plus->uuid));
  CHECK(VmNameOf(*d) == "hp");
}

TEST_CASE("memory units follow libvirt; the default is KiB") {
  auto kib = [](const std::string& mem) {
    return ParseDomainXml("<domain type='kvm'><name>a</name>" + mem +
                          "<os><type>hvm</type><kernel>/k</kernel></os></domain>");
  };
  CHECK(kib("<memory>65536</memory>")->memory_kib == 65536);
  CHECK(kib("<memory unit='G'>1</memory>")->memory_kib == 1024 * 1024);
  CHECK(kib("<memory unit='MB'>100</memory>")->memory_kib == 100000000 / 1024);
  CHECK(kib("<memory unit='b'>33554432</memory>")->memory_kib == 32768);
  CHECK_THAT(std::string(kib("<memory unit='parsec'>1</memory>").status().message()), Catch::Contains("unit"));
  CHECK_THAT(std::string(kib("<memory>1024</memory>").status().message()), Catch::Contains("16 MiB"));
}

TEST_CASE("a missing uuid is generated as a version-4 UUID") {
  auto d = ParseDomainXml("<domain type='kvm'><name>a</name><memory>65536</memory>"
                          "<os><type>hvm</type><kernel>/k</kernel></os></domain>");
  REQUIRE(d.ok());
  CHECK((d->uuid[6] >> 4) == 4);
  CHECK_FALSE(ParseDomainXml("<domain type='kvm'><name>a</name><memory>65536</memory>"
                             "<os><type>hvm</type><kernel>/k</kernel></os></domain>",
                             false)
                  .ok());
}

TEST_CASE("refusals name the element and its line") {
  auto err = [](const std::string& xml) { return std::string(ParseDomainXml(xml).status().message()); };
  CHECK_THAT(err("<domain type='kvm'>\n<name>a</name>\n<memory>65536</memory>\n<vcpu>0</vcpu>\n</domain>"),
             Catch::Contains("line 4: <vcpu>"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><memory>65536</memory>\n<os><type>hvm</type>"
                 "<kernel>/k</kernel></os>\n<devices>\n<disk type='file'/></devices></domain>"),
             Catch::Contains("line 4: <disk>: missing <source"));
  const std::string os = "<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type>"
                         "<kernel>/k</kernel></os><devices>\n";
  CHECK_THAT(err(os + "<disk type='block'/></devices></domain>"), Catch::Contains("line 2: <disk>: type 'block'"));
  CHECK_THAT(err(os + "<disk device='cdrom'/></devices></domain>"), Catch::Contains("device 'cdrom'"));
  CHECK_THAT(err(os + "<disk><driver type='vmdk'/></disk></devices></domain>"), Catch::Contains("type 'vmdk'"));
  CHECK_THAT(err(os + "<disk><source file='rel.img'/></disk></devices></domain>"), Catch::Contains("absolute"));
  CHECK_THAT(err(os + "<disk><source file='/a.img'/><target dev='sda'/></disk></devices></domain>"),
             Catch::Contains("target dev 'sda'"));
  CHECK_THAT(err(os + "<disk><source file='/a.img'/><target dev='vdb'/></disk></devices></domain>"),
             Catch::Contains("'vdb' without 'vda'"));
  CHECK_THAT(err(os + "<disk><source file='/a'/><target dev='vda'/></disk><disk><source file='/b'/>"
                      "<target dev='vda'/></disk></devices></domain>"),
             Catch::Contains("used twice"));
  CHECK_THAT(err(os + "<interface type='bridge'/></devices></domain>"), Catch::Contains("type 'bridge'"));
  CHECK_THAT(err(os + "<interface type='ethernet'/></devices></domain>"), Catch::Contains("missing <target"));
  CHECK_THAT(err(os + "<interface type='ethernet'><target dev='t'/><model type='e1000'/></interface></devices>"
                      "</domain>"),
             Catch::Contains("model 'e1000'"));
  CHECK_THAT(err("<domain type='xen'><name>a</name></domain>"), Catch::Contains("domain type 'xen'"));
  CHECK_THAT(err("<domain type='kvm'><name>a/b</name></domain>"), Catch::Contains("<name>"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><memory>65536</memory></domain>"), Catch::Contains("<os>"));
  CHECK_THAT(err("<domain type='kvm'>\n<name>a</name>\n<memory>65536"), Catch::Contains("malformed XML"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><bogus/></domain>"),
             Catch::Contains("<bogus>: unsupported element"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type></os></domain>"),
             Catch::Contains("<kernel>"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type>"
                 "<kernel>vmlinuz</kernel></os></domain>"),
             Catch::Contains("<kernel>: 'vmlinuz' is not an absolute path"));
  CHECK_THAT(err("<domain type='kvm'><name>a</name><metadata><x:y xmlns:x='urn:other'/></metadata></domain>"),
             Catch::Contains("unknown metadata"));
}

TEST_CASE("an external entity is not fetched") {
  auto d = ParseDomainXml("<!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><domain type='kvm'>"
                          "<name>&e;</name><memory>65536</memory><os><type>hvm</type><kernel>/k</kernel></os>"
                          "</domain>");
  if (d.ok()) CHECK(d->name.find("root") == std::string::npos);
}

TEST_CASE("names and UUIDs are validated") {
  CHECK(ValidateDomainName("lab-vm_1.2").ok());
  CHECK_FALSE(ValidateDomainName("").ok());
  CHECK_FALSE(ValidateDomainName("../x").ok());
  CHECK_FALSE(ValidateDomainName("a b").ok());
  CHECK(ParseUuid("0f8fad5bd9cb469fa16570867728950e").ok());
  CHECK_FALSE(ParseUuid("0f8fad5b").ok());
  CHECK_FALSE(ParseUuid("zz8fad5bd9cb469fa16570867728950e").ok());
}
