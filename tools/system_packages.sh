#!/usr/bin/env bash
# System packages the suite's own servers need, installed once (as root, or with password-less sudo):
# a real PostgreSQL that edgec tune's workers share (the test starts its own, as an unprivileged user)
# and headless Chromium that renders the HTML report. Elsewhere it says what is missing and goes on.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null; then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
        echo "tools/system_packages.sh: not root: install postgresql and chromium for the tune and report tests" >&2
        exit 0
    fi
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql chromium
