#!/bin/sh
# PID 1 of the kernel-client lab's guest (busybox).  It loads the modules the
# initramfs carries, configures eth0 from the kernel command line
# (hkc.ip=ADDR/LEN), then serves the host on the second serial port:
#   host -> guest:  <id> <base64 of a shell script>
#   guest -> host:  @@BEGIN <id> / base64 of the script's output / @@END <id> <rc>
# One script at a time: the host bounds each one (a hung script costs the
# guest, which the host then stops).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=80% tmp /tmp
mount -t debugfs debug /sys/kernel/debug  # cifs's dynamic debug, for tests that read it
mkdir -p /mnt
echo /sbin/modprobe > /proc/sys/kernel/modprobe
for m in $(cat /etc/hkc-modules); do
  modprobe "$m" || echo "hkc: modprobe $m failed"
done
ip=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in hkc.ip=*) ip=${arg#hkc.ip=} ;; esac
done
ip link set lo up
ip addr add "$ip" dev eth0
ip link set eth0 up
# The port stays open on fd 4 from here on: a tty's last close drops what
# arrived meanwhile, and the host may send its first script at once.
exec 4<>/dev/ttyS1
stty raw -echo -icrnl -onlcr <&4
echo "@@READY $(cut -d' ' -f1 /proc/uptime)" >&4
while read -r id payload <&4; do
  [ -n "$id" ] || continue
  echo "$payload" | base64 -d > /tmp/.hkc-cmd.sh
  sh /tmp/.hkc-cmd.sh > /tmp/.hkc-out 2>&1 < /dev/null 4<&-
  rc=$?
  { echo "@@BEGIN $id"; base64 /tmp/.hkc-out; echo "@@END $id $rc"; } >&4
done
echo "hkc: control channel closed"
poweroff -f
