#!/bin/sh
# Run a command as a pod's container would: a read-only root filesystem, the registry mounted read-only,
# an empty writable tmpfs at the volume mount point (an emptyDir) and at /tmp, as user 10001.
# Needs root and a private mount namespace: `unshare --mount sh read_only_root.sh ...`.
#
#   read_only_root.sh NEW_ROOT REGISTRY REGISTRY_MOUNT VOLUME_MOUNT COPY_TO WORKDIR -- COMMAND...
#
# NEW_ROOT (an empty directory) becomes a tmpfs holding read-only binds of the host's top-level
# directories (not /root or /home: a pod has neither) and of each path in $EXTRA_READ_ONLY (the Python
# installation the venv links to), and of WORKDIR when none of those holds it. COMMAND runs chrooted there, in
# WORKDIR; what it wrote into VOLUME_MOUNT
# is copied to COPY_TO (a host path) before the namespace and its mounts go away. Exits with COMMAND's status.
set -eu
root=$1 registry=$2 registry_mount=$3 volume_mount=$4 copy_to=$5 workdir=$6
shift 7
mount --make-rprivate /
mount -t tmpfs -o size=16m,mode=0755 read-only-root "$root"
for entry in /*; do
    name=${entry#/}
    case "$name" in proc | sys | dev | tmp | root | home | lost+found) continue ;; esac
    if [ -L "$entry" ]; then
        cp -P "$entry" "$root/$name"
    elif [ -d "$entry" ]; then
        mkdir "$root/$name"
        mount --rbind "$entry" "$root/$name"
        mount -o remount,bind,ro "$root/$name"
    fi
done
for extra in ${EXTRA_READ_ONLY:-}; do
    mkdir -p "$root$extra"
    mount --rbind "$extra" "$root$extra"
    mount -o remount,bind,ro "$root$extra"
done
mkdir -p "$root/proc" "$root/dev" "$root/tmp" "$root$registry_mount" "$root$volume_mount"
mount --rbind /proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$registry" "$root$registry_mount"
mount -o remount,bind,ro "$root$registry_mount"
mount -t tmpfs -o size=512m,mode=0777 empty-dir "$root$volume_mount"
mount -t tmpfs -o size=64m,mode=1777 tmp "$root/tmp"
if [ ! -d "$root$workdir" ]; then  # a checkout under /tmp, /root or /home: bind it in, read-only
    mkdir -p "$root$workdir"
    mount --rbind "$workdir" "$root$workdir"
    mount -o remount,bind,ro "$root$workdir"
fi
mount -o remount,ro "$root"
status=0
chroot "$root" setpriv --reuid 10001 --regid 10001 --clear-groups \
    env -i PATH="$workdir/.venv/bin:/usr/local/bin:/usr/bin:/bin" HOME=/nonexistent \
    sh -c 'cd "$0" && exec "$@"' "$workdir" "$@" || status=$?
cp -a "$root$volume_mount/." "$copy_to/"
exit $status
