#!/usr/bin/env bash
# Screenshots an llmq inspect report with headless Chromium, to check that it
# renders (charts included) without a network: the page is opened from a
# file:// URL.
#
#   scripts/inspect-screenshot.sh REPORT.html OUT.png [HEIGHT]
#
# Installs Debian's chromium package when no Chromium is found (needs root
# and the Debian package mirror). HEIGHT is the window height in pixels
# (default 2400; the page is cut there), the width is 1280.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: $0 REPORT.html OUT.png [HEIGHT]" >&2
	exit 2
fi
report=$1
out=$2
height=${3:-2400}
if [ ! -f "$report" ]; then
	echo "$0: $report: no such file" >&2
	exit 1
fi

browser=""
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then
		browser=$b
		break
	fi
done
if [ -z "$browser" ]; then
	echo "installing chromium (Debian package)…" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	browser=chromium
fi

abs=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
mkdir -p "$(dirname "$out")"
# The screenshot goes to a temporary name first so that a failed run leaves
# no partial image behind.
tmp="$(dirname "$out")/.$(basename "$out").tmp.png"
trap 'rm -f "$tmp"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
	--screenshot="$tmp" --window-size="1280,$height" "file://$abs" 2>/dev/null
mv "$tmp" "$out"
echo "wrote $out" >&2
