#!/bin/sh
# Debian packages beyond Python that a target needs, installed only when missing:
#   scripts/system-deps.sh test    prometheus + promtool (tests/monitoring runs a real Prometheus),
#                                  redis-server (the shared experiment state tests run a real Redis),
#                                  chromium + chromedriver (tests/ui drive the trade-off page headless)
#   scripts/system-deps.sh bench   wrk + h2load (the serving benchmark's load generators), redis-server
set -eu
case "${1:-test}" in
    test) packages="prometheus redis-server chromium chromium-driver"
          commands="prometheus promtool redis-server chromium chromedriver" ;;
    bench) packages="wrk nghttp2-client redis-server"; commands="wrk h2load redis-server" ;;
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
