#!/usr/bin/env bash
# Installs the Debian packages that packaging/build.sh, check.sh and test-systemd.sh use, when any
# is missing (a fresh CI machine has none of them). Needs root. cargo-deb and cargo-generate-rpm
# are installed by build.sh itself.
set -euo pipefail

# command -> Debian package
declare -A needed=(
    [systemd-nspawn]=systemd-container
    [mmdebstrap]=mmdebstrap
    [lintian]=lintian
    [rpm]=rpm
    [objcopy]=binutils
    [jq]=jq
    [curl]=curl
    [pgrep]=procps
    [dpkg-deb]=dpkg
    [systemd-analyze]=systemd
)
missing=()
for command in "${!needed[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${needed[$command]}")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: everything is installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: needs root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"
