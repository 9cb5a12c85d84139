#!/usr/bin/env bash
# Debian packages the test suite drives for real: chromium (the report rendered in a
# browser), slurm-wlm + munge (a one-node SLURM cluster). Idempotent: installs only
# what is missing. Needs root; without it, says what is missing (those tests skip).
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ] || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ] || need+=(munge)

if [ ${#need[@]} -eq 0 ]; then
    echo "system packages: all present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system packages missing (${need[*]}); run as root to install them, or their tests skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
echo "system packages installed: ${need[*]}"
