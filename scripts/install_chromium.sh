#!/usr/bin/env bash
# Install Debian's chromium (headless screenshots: `make report-screenshot`, `make app-screenshot`, the app tests)
# when /usr/bin/chromium is missing; a no-op when it is there. Needs root (apt-get), as CI and `make test` run.
set -euo pipefail

[[ -x /usr/bin/chromium ]] && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get > /dev/null; then
    echo "install_chromium.sh: the browser tests and screenshots need Debian's chromium at /usr/bin/chromium;" \
         "installing it takes root and apt-get (as root: apt-get install chromium)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }
[[ -x /usr/bin/chromium ]] || { echo "installing chromium did not give /usr/bin/chromium" >&2; exit 1; }
