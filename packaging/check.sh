#!/usr/bin/env bash
# Checks the unit and the packages built by packaging/build.sh, printing what each check saw:
#   - systemd-analyze security --offline=true rates the unit at most 2.0;
#   - the .deb and .rpm hold exactly packaging/expected-deb.txt / expected-rpm.txt, pollerd.toml
#     is a configuration file upgrades keep, and the maintainer scripts create the user and
#     reload systemd without enabling or starting anything;
#   - lintian reports no error on the .deb.
# (`systemd-analyze verify` needs the unit installed on a whole system: test-systemd.sh runs it.)
# Ends with "check: N passed, M failed"; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$target_dir" in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
deb=$(echo "$target_dir"/packages/pollerd_*.deb)
rpm_file=$(echo "$target_dir"/packages/pollerd-*.rpm)
for f in "$deb" "$rpm_file"; do
    [ -f "$f" ] || { echo "check.sh: $f not found; run packaging/build.sh first" >&2; exit 1; }
done
for tool in systemd-analyze dpkg-deb rpm lintian; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool is required (packaging/install-deps.sh)" >&2; exit 1; }
done

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
step() { printf '\n== %s\n' "$*"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# "1.2" <= "2.0", in awk because the shell has no decimals.
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }

step "systemd-analyze security --offline=true systemd/pollerd.service"
security=$(systemd-analyze security --offline=true --no-pager systemd/pollerd.service 2>&1 || true)
echo "$security" | grep -E '^✗|Overall exposure' || true
exposure=$(echo "$security" | sed -n 's/.*Overall exposure level for pollerd.service: \([0-9.]*\).*/\1/p')
if [ -n "$exposure" ] && at_most "$exposure" 2.0; then
    pass "offline exposure $exposure <= 2.0"
else
    fail "offline exposure '${exposure:-none}' is not <= 2.0"
fi

# Regular files and symlinks, plus directories that hold nothing (e.g. instances.d/).
deb_listing() {
    dpkg-deb --contents "$1" | awk '{ print substr($1, 1, 1) " " $NF }' | sed 's# \./# /#; s#/$##' |
        awk '{ type[$2] = $1; order[NR] = $2 }
             END { for (i = 1; i <= NR; i++) { p = order[i]; parent = p
                       sub("/[^/]*$", "", parent); has_child[parent] = 1 }
                   for (i = 1; i <= NR; i++) { p = order[i]
                       if (type[p] != "d") print p; else if (!has_child[p] && p != "") print p "/" } }' |
        sort
}

compare_listing() {
    local what=$1 expected=$2 actual=$3
    if diff -u "$expected" "$actual" >"$work/diff"; then
        pass "$what holds exactly $(wc -l <"$expected") expected paths ($expected)"
    else
        fail "$what differs from $expected:"
        cat "$work/diff"
    fi
}

step "dpkg-deb --contents $(basename "$deb")"
dpkg-deb --contents "$deb"
deb_listing "$deb" >"$work/deb.txt"
compare_listing ".deb" packaging/expected-deb.txt "$work/deb.txt"

step "dpkg-deb --info: conffiles and maintainer scripts"
dpkg-deb --field "$deb" Package Version Architecture Depends
conffiles=$(dpkg-deb --info "$deb" conffiles)
echo "conffiles: $conffiles"
if [ "$conffiles" = "/etc/pollerd/pollerd.toml" ]; then
    pass "/etc/pollerd/pollerd.toml is the .deb's only conffile"
else
    fail ".deb conffiles: '$conffiles'"
fi
postinst=$(dpkg-deb --info "$deb" postinst)
echo "$postinst" | grep -E 'systemd-sysusers|daemon-reload|deb-systemd-(helper|invoke)' || true
# cargo-deb's dh_installsystemd fragments: the "dont-enable" form only re-enables a unit the
# admin had enabled before an upgrade; an upgrade try-restarts (restarts only if running).
if echo "$postinst" | grep -q 'systemd-sysusers.* pollerd.conf' &&
    echo "$postinst" | grep -q 'daemon-reload' &&
    echo "$postinst" | grep -q 'deb-systemd-helper debian-installed pollerd.service' &&
    ! echo "$postinst" | grep -Eq 'deb-systemd-invoke (start|restart) |systemctl (--system )?(enable|start|restart) '; then
    pass ".deb postinst: creates the user, reloads systemd, neither enables nor starts pollerd"
else
    fail ".deb postinst does not do what it should"
fi

step "rpm -qlp $(basename "$rpm_file")"
rpm -qip "$rpm_file" | grep -E '^(Name|Version|Release|Architecture|Summary)' || true
rpm -qp --requires "$rpm_file" | sed 's/^/requires: /'
rpm -qlp "$rpm_file" | tee "$work/rpm-raw.txt"
sort "$work/rpm-raw.txt" >"$work/rpm.txt"
compare_listing ".rpm" packaging/expected-rpm.txt "$work/rpm.txt"
config_files=$(rpm -qp --queryformat '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpm_file" | awk '$2 ~ /c/')
echo "config files: $config_files"
if [ "$config_files" = "/etc/pollerd/pollerd.toml cn" ]; then
    pass "/etc/pollerd/pollerd.toml is the .rpm's only config file, %config(noreplace)"
else
    fail ".rpm config files: '$config_files'"
fi
scripts=$(rpm -qp --scripts "$rpm_file")
echo "$scripts"
if echo "$scripts" | grep -q 'systemd-sysusers /usr/lib/sysusers.d/pollerd.conf' &&
    echo "$scripts" | grep -q 'daemon-reload' &&
    ! echo "$scripts" | grep -Eq 'systemctl (enable|start|restart) '; then
    pass ".rpm scriptlets: create the user, reload systemd, neither enable nor start pollerd"
else
    fail ".rpm scriptlets do not do what they should"
fi

step "lintian $(basename "$deb")"
lintian_output=$(lintian --fail-on error --display-info "$deb" 2>&1) && lintian_status=0 || lintian_status=$?
echo "${lintian_output:-(no tags)}"
errors=$(echo "$lintian_output" | grep -c '^E: ' || true)
if [ "$lintian_status" -eq 0 ] && [ "$errors" -eq 0 ]; then
    pass "lintian: no errors ($(echo "$lintian_output" | grep -c '^[WIP]: ' || true) warning/info tags)"
else
    fail "lintian: $errors error(s), exit $lintian_status"
fi

echo
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
