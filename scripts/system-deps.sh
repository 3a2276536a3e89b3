#!/bin/sh
# Debian packages beyond Python that a target needs, installed only when missing:
#   scripts/system-deps.sh test    prometheus + promtool (tests/monitoring runs a real Prometheus)
#   scripts/system-deps.sh bench   wrk + h2load (the serving benchmark's load generators)
set -eu
case "${1:-test}" in
    test) packages="prometheus"; commands="prometheus promtool" ;;
    bench) packages="wrk nghttp2-client"; commands="wrk h2load" ;;
    *) echo "usage: scripts/system-deps.sh test|bench" >&2; exit 2 ;;
esac
missing=""
for command in $commands; do
    command -v "$command" >/dev/null 2>&1 || missing="$missing $command"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages for:$missing" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
# shellcheck disable=SC2086  # a list of package names
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
