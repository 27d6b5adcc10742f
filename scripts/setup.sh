#!/usr/bin/env bash
# Installs every Debian 12 package Coalesce needs to build, test and benchmark. Idempotent.
set -euo pipefail
PKGS=(
  build-essential g++ meson ninja-build pkg-config
  linux-libc-dev
  libabsl-dev catch2
  liblz4-dev zlib1g-dev liblzma-dev libzstd-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  acpica-tools
  busybox-static cpio gzip xz-utils
  qemu-system-x86 qemu-system-common qemu-utils e2fsprogs
  iproute2 procps python3 python3-matplotlib
  libvirt-clients python3-libvirt libtirpc-dev libxml2-dev
  clang libclang-rt-14-dev libseccomp-dev libssl-dev
  libavahi-core-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
