#!/bin/sh
# /init of the nested KVM host that scripts/kvm-vm boots under QEMU TCG (packed by
# scripts/nested-host-assets.sh). It loads kvm_amd and the 9p modules, builds a root out of this machine's own
# root (9p, read-only) with tmpfs for /tmp and /run, the checkout read-write at its own path (9p), and runs the
# command kvm-vm wrote into the run share: /run/kvm-vm/cmd.sh, in that root, so the command sees the same files,
# tools and paths as on the machine outside. The command's exit status goes to /run/kvm-vm/status; the kernel
# log is the console (ttyS0). Then power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "kvm-vm(nested): $*"; }
give_up() {
  say "error: $*"
  echo "kvm-vm(nested): error: $*" >/dev/ttyS1
  [ -d /share/ok ] && { echo 125 >/share/status; sync; }
  poweroff -f
}

# A module's parameters come from the kernel command line as modprobe would take them (kvm_amd.npt=0 for
# kvm-amd.ko): insmod alone reads none, and kvm-vm --append passes them so.
module_params() {
  name="$(basename "$1" .ko | tr - _)"
  for word in $(cat /proc/cmdline); do
    case "$word" in "$name".*=*) printf '%s ' "${word#"$name".}" ;; esac
  done
}
for m in $(cat /lib/modules/load-order); do
  params="$(module_params "$m")"
  [ -n "$params" ] && say "$m: $params"
  # shellcheck disable=SC2086 # one word per parameter
  insmod "/lib/modules/$m" $params || give_up "insmod $m $params failed"
done
[ -c /dev/kvm ] || give_up "/dev/kvm did not appear after loading kvm_amd: $(dmesg | grep -iE 'kvm|svm' | tail -n 3)"

P9="trans=virtio,version=9p2000.L,msize=524288"
mount -t 9p -o "$P9" run /share || give_up "cannot mount the run share"
mkdir -p /share/ok
# This machine's root changes under us only in the checkout (mounted separately below) and /tmp (replaced), so
# the read-only root can cache aggressively: it is most of the file traffic (libraries, python).
mount -t 9p -o "$P9,ro,cache=loose" hostroot /newroot || give_up "cannot mount the host's root over 9p"
REPO="$(cat /share/repo)"
for d in tmp run var/tmp; do mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d" || give_up "tmpfs on /$d"; done
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
# A checkout under /tmp, /run or /var/tmp lies in a fresh tmpfs now: make its mount point there.
mkdir -p "/newroot$REPO" 2>/dev/null
mount -t 9p -o "$P9" repo "/newroot$REPO" || give_up "cannot mount the checkout $REPO over 9p"
mkdir -p /newroot/run/kvm-vm
mount --move /share /newroot/run/kvm-vm || give_up "cannot move the run share"
ip link set lo up
hostname kvm-vm
# The new root goes on top of / (as switch_root does) rather than being entered with a plain chroot: a chrooted
# process may not create user namespaces (clone3 answers EPERM), and the edge agent starts each runtime in one.
# This shell keeps the initramfs as its own root (a lookup from the process root does not cross the mount on top
# of it), so busybox stays at hand for the end; its working directory is the new root, entered with `chroot .`.
cd /newroot || give_up "cd /newroot"
mount --move /newroot / || give_up "cannot move the new root onto /"

# ttyS0 is the kernel's console (a file outside), ttyS1 the command's output (kvm-vm's stdout): raw, no CR
# insertion, so it reads like a pipe on the outside.
stty -F /dev/ttyS1 raw -echo 2>/dev/null
# Keep one KVM VM open for the whole run. Linux 6.1 turns SVM on in every CPU when the first VM is created and off
# when the last one is destroyed, by an IPI to every CPU; under QEMU's TCG that IPI sometimes never completes, and
# the CPU that sent it spins in kvm_destroy_vm forever (soft lockups, then a hung run, seen about once in 30 guest
# tests). With a VM always open, KVM's users never drop to zero and that IPI is never sent after the first VM.
chroot . /usr/bin/python3 -c '
import fcntl, os, signal, time
kvm = os.open("/dev/kvm", os.O_RDWR)
vm = fcntl.ioctl(kvm, 0xAE01, 0)  # KVM_CREATE_VM
signal.signal(signal.SIGTERM, signal.SIG_DFL)
while True:
    time.sleep(3600)
' </dev/null >/dev/null 2>&1 &
chroot . /bin/sh /run/kvm-vm/cmd.sh </dev/null
echo "$?" >./run/kvm-vm/status
sync
poweroff -f
