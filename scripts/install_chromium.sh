#!/usr/bin/env bash
# Debian's `chromium` for the browser tests (tests/browser/, Playwright drives it through executable_path; no
# browser is ever downloaded). Installs it with apt-get when missing, as root or with password-less sudo. Never
# fails the build: without a way to install it, says what to run (the browser tests then fail, naming it too).
set -uo pipefail

if [ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: missing and no apt-get here: install Chromium and set CHROMIUM=<its path> for tests/browser/" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "chromium: missing; run \`sudo apt-get install -y chromium\` for tests/browser/" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "chromium: installing Debian's package (apt-get install -y chromium)" >&2
"${SUDO[@]}" apt-get install -y -q chromium >/dev/null \
    || { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q chromium >/dev/null; } \
    || echo "chromium: apt-get install failed; tests/browser/ will fail" >&2
exit 0
