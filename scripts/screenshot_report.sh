#!/usr/bin/env bash
# Render a `t2v compare` report folder's report.html to REPORT/screenshot.png in headless Chromium.
# Usage: scripts/screenshot_report.sh REPORT_DIR      (or: make report-screenshot REPORT=REPORT_DIR)
# Installs Debian's chromium with apt-get when /usr/bin/chromium is missing (needs root).
set -euo pipefail

report=${1:?usage: $0 REPORT_DIR (a folder written by t2v compare, holding report.html)}
[[ -f "$report/report.html" ]] || { echo "$report/report.html not found; run t2v compare first" >&2; exit 1; }
report=$(cd "$report" && pwd)

"$(dirname "$0")/install_chromium.sh"

rm -f "$report/screenshot.png"  # so that a stale one never passes for a fresh one
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The background-networking flags matter here: without them Chromium opens many connections at once,
# which this machine refuses. --no-sandbox: we run as root in a container.
# Its stderr (dbus complaints in a container) goes to a log that is shown only when it fails.
if ! chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
        --window-size=1280,2400 --screenshot="$report/screenshot.png" "file://$report/report.html" \
        >"$profile/chromium.log" 2>&1 || [[ ! -s "$report/screenshot.png" ]]; then
    tail -n 30 "$profile/chromium.log" >&2
    echo "chromium failed to screenshot $report/report.html" >&2
    exit 1
fi
echo "wrote $report/screenshot.png"
