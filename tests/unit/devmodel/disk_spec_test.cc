// --disk parsing, the image checks made before a storage daemon starts, and the daemon's command line.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "devmodel/vhost_user/disk_spec.h"
#include "devmodel/vhost_user/storage_daemon.h"
#include "hypervisor/base/temp_dir.h"

using namespace coalesce;

TEST_CASE("--disk takes a file and optional format= and readonly=") {
  auto d = ParseDiskSpec("/images/a.qcow2");
  REQUIRE(d.ok());
  CHECK((d->path == "/images/a.qcow2" && d->format == DiskFormat::kAuto && !d->readonly));
  d = ParseDiskSpec("b.img,format=raw,readonly=on");
  REQUIRE(d.ok());
  CHECK((d->path == "b.img" && d->format == DiskFormat::kRaw && d->readonly));
  d = ParseDiskSpec("c,readonly=off,format=qcow2");
  REQUIRE(d.ok());
  CHECK((d->format == DiskFormat::kQcow2 && !d->readonly && !d->shadow));
  d = ParseDiskSpec("d,shadow=on");
  REQUIRE(d.ok());
  CHECK(d->shadow);
}

TEST_CASE("bad --disk values name what was wrong") {
  CHECK(ParseDiskSpec("").status().message().find("no file") != std::string::npos);
  CHECK(ParseDiskSpec(",format=raw").status().message().find("no file") != std::string::npos);
  CHECK(ParseDiskSpec("a,format=vmdk").status().message().find("format 'vmdk'") != std::string::npos);
  CHECK(ParseDiskSpec("a,readonly=yes").status().message().find("readonly 'yes'") != std::string::npos);
  CHECK(ParseDiskSpec("a,shadow=yes").status().message().find("shadow 'yes'") != std::string::npos);
  CHECK(ParseDiskSpec("a,cache=none").status().message().find("unknown option 'cache=none'") != std::string::npos);
}

TEST_CASE("the image check names a missing file, refuses a qcow2 claim on a raw file and detects qcow2") {
  auto dir = TempDir::Create("disk-spec-test-");
  REQUIRE(dir.ok());
  const std::string raw = dir->path() + "/raw.img";
  const std::string qcow = dir->path() + "/q.img";
  std::ofstream(raw) << std::string(4096, 'x');
  std::ofstream(qcow) << std::string("QFI\xfb", 4) << std::string(4092, '\0');

  auto missing = CheckDiskImage({.path = dir->path() + "/nope.img"});
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(missing.status().message().find("nope.img") != std::string::npos);

  auto wrong = CheckDiskImage({.path = raw, .format = DiskFormat::kQcow2});
  CHECK(wrong.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(wrong.status().message().find("not a qcow2 image") != std::string::npos);

  CHECK(*CheckDiskImage({.path = raw}) == DiskFormat::kRaw);
  CHECK(*CheckDiskImage({.path = qcow}) == DiskFormat::kQcow2);
  CHECK(*CheckDiskImage({.path = qcow, .format = DiskFormat::kRaw}) == DiskFormat::kRaw);  // the user said so

  if (::geteuid() != 0) {  // root may write anything
    ::chmod(raw.c_str(), 0444);
    CHECK(CheckDiskImage({.path = raw}).status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(CheckDiskImage({.path = raw, .readonly = true}).ok());
  }
}

TEST_CASE("the storage daemon exports a format node over a file node, commas escaped, read-only when asked") {
  auto args = StorageDaemonArgs("/usr/bin/qemu-storage-daemon", {.path = "/x/a,b.qcow2", .readonly = true},
                                DiskFormat::kQcow2, "/run/d/disk0.sock");
  REQUIRE(args.size() == 7);
  CHECK(args[2] == "driver=file,node-name=file0,filename=/x/a,,b.qcow2,read-only=on");
  CHECK(args[4] == "driver=qcow2,node-name=disk0,file=file0,read-only=on");
  CHECK(args[6] ==
        "type=vhost-user-blk,id=export0,node-name=disk0,addr.type=unix,addr.path=/run/d/disk0.sock,writable=off");
}
