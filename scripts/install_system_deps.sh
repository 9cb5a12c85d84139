#!/usr/bin/env bash
# Debian packages the test suite drives for real:
#   slurm-wlm, munge   a one-node SLURM cluster (tests/slurm)
#   chromium           the HTML report rendered in a headless browser
# Idempotent: installs only the packages dpkg does not list as installed, so a
# second call costs nothing. Needs root (or password-less sudo); without either
# it names what is missing and leaves it (those tests then skip, or fail in CI).
# Other apt users may hold the dpkg lock: wait for it up to 10 minutes.
set -euo pipefail

PACKAGES=(slurm-wlm munge chromium)

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present (${PACKAGES[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "system packages missing: ${missing[*]}; run this script as root to install them" >&2
    exit 0
fi

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq "${missing[@]}"
echo "system packages installed: ${missing[*]}"
