#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for tests/test_server_browser.py, and Xvfb for the live
# window test in tests/test_live.py, installed when missing. Idempotent: does nothing when all
# are there. `playwright install` style browser downloads do not
# work on these machines; Debian's packages do (/usr/bin/chromium, /usr/bin/chromedriver), and the
# test runs Chromium headless, so no X server (xvfb) is needed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
        && command -v Xvfb >/dev/null 2>&1; then
    echo "install_browser: chromium, chromedriver and Xvfb already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get on this machine; the browser test will be skipped" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_browser: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq chromium chromium-driver xvfb >/dev/null
echo "install_browser: installed $(chromium --version 2>/dev/null | head -n1)"
