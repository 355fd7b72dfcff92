#!/usr/bin/env bash
# End-to-end test of the .deb under a real systemd: boots a minimal Debian bookworm in
# systemd-nspawn (this machine's PID 1 is not systemd), installs the package with dpkg, and drives
# pollerd against the library's ConnectWise simulator and webhook receiver (examples/testbed.rs),
# which run on the host's loopback, shared with the container.
#
#   bash packaging/test-systemd.sh [PATH.deb]     (root; default: the .deb build.sh made)
#
# Shows: install creates the user and starts nothing; start -> active (READY=1 arrived); an event
# delivered; journald entries carry INSTANCE/RESOURCE/EVENT_ID; reload -> same process, change
# applied; an invalid instance file -> still active, the journal names file and line; reinstall
# keeps a modified pollerd.toml; the service runs as pollerd, without capabilities, and can write
# only its state and runtime directories; group pollerd may use `pollerd status`, others may not;
# `systemd-analyze security` <= 2.0; stop -> inactive, exit status 0; an unusable pollerd.toml
# fails the start.
# The container, its cgroups and the test bed are removed on exit, failed or not.
# Ends with "test-systemd: N passed, M failed"; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$target_dir" in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
deb=${1:-$(echo "$target_dir"/packages/pollerd_*.deb)}
[ -f "$deb" ] || { echo "test-systemd: $deb not found; run packaging/build.sh first" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "test-systemd: needs root (systemd-nspawn)" >&2; exit 1; }
for tool in systemd-nspawn mmdebstrap nsenter jq curl; do
    command -v "$tool" >/dev/null || { echo "test-systemd: $tool is required (packaging/install-deps.sh)" >&2; exit 1; }
done

# The container's tree, made once per machine and never written to (--volatile=overlay).
# man-db: systemd-analyze verify checks the Documentation= man pages.
rootfs_packages=systemd,systemd-sysv,dbus,libnss-systemd,procps,man-db
rootfs=${POLLERD_E2E_ROOTFS:-/var/cache/pollerd-e2e/bookworm-minbase}
name=pollerd-e2e-$$
work=$(mktemp -d /tmp/pollerd-e2e.XXXXXX)
share=$work/share
mkdir -p "$share"
testbed_pid=
nspawn_pid=
ct_pid=
cgroup_dirs=()

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...: PASS when the command succeeds
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
step() { printf '\n== %s\n' "$*"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out after ${seconds}s waiting for: $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

# Runs a command inside the container, with a clean environment.
ct() {
    nsenter -t "$ct_pid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= \
        SYSTEMD_COLORS=0 "$@"
}

cleanup() {
    local status=$?
    set +e
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        if [ -n "$ct_pid" ]; then
            ct systemctl poweroff --no-block >/dev/null 2>&1
        fi
        local deadline=$((SECONDS + 30))
        while kill -0 "$nspawn_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            echo "container did not power off in 30 s; killing it" >&2
            kill -KILL "$nspawn_pid"
        fi
        wait "$nspawn_pid" 2>/dev/null
    fi
    if [ -n "$testbed_pid" ]; then
        kill -TERM "$testbed_pid" 2>/dev/null
        wait "$testbed_pid" 2>/dev/null
    fi
    # Our cgroups, deepest first; whatever the container left in them is ours to end.
    local dir pid
    for dir in "${cgroup_dirs[@]}"; do
        [ -d "$dir" ] || continue
        while read -r pid; do kill -KILL "$pid" 2>/dev/null; done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
        find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$dir" ] && echo "could not remove the cgroup $dir" >&2
    done
    if [ "$status" -ne 0 ] && [ -f "$work/console.log" ]; then
        echo "--- container console (last 40 lines)" >&2
        tail -n 40 "$work/console.log" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "container tree ($rootfs)"
if [ "$(cat "$rootfs.stamp" 2>/dev/null)" != "$rootfs_packages" ]; then
    rm -rf "$rootfs" "$rootfs.stamp" "$rootfs.new"
    mkdir -p "$(dirname "$rootfs")"
    mmdebstrap --quiet --variant=minbase --include="$rootfs_packages" bookworm "$rootfs.new"
    mv "$rootfs.new" "$rootfs"
    echo "$rootfs_packages" >"$rootfs.stamp"
else
    echo "reusing it"
fi

step "test bed: ConnectWise simulator and webhook receiver on the host's loopback"
cargo build --release --locked --example testbed
"$target_dir/release/examples/testbed" "$share" >"$work/testbed.log" 2>&1 &
testbed_pid=$!
wait_for 30 "the test bed's testbed.env" test -f "$share/testbed.env"
# shellcheck disable=SC1091
. "$share/testbed.env"
cat "$share/testbed.env"
cp "$deb" "$share/pollerd.deb"

step "boot systemd in a container"
# nspawn puts the container in the cgroup it runs in: give it its own, on both hierarchies of
# this hybrid layout (or the unified one alone).
if [ -d /sys/fs/cgroup/unified ]; then
    cgroup_dirs=("/sys/fs/cgroup/systemd/ct-$name" "/sys/fs/cgroup/unified/ct-$name")
else
    cgroup_dirs=("/sys/fs/cgroup/ct-$name")
fi
mkdir "${cgroup_dirs[@]}"
(
    for dir in "${cgroup_dirs[@]}"; do echo "$BASHPID" >"$dir/cgroup.procs"; done
    exec systemd-nspawn -q -D "$rootfs" --volatile=overlay -M "$name" --register=no --keep-unit \
        --console=pipe --bind-ro="$share:/mnt/e2e" -b
) </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
container_init() { # the container's PID 1: nspawn's child that is PID 1 of its own namespace
    local child
    for child in $(pgrep -P "$nspawn_pid"); do
        if grep -Eq '^NSpid:.*[[:space:]]1$' "/proc/$child/status" 2>/dev/null; then
            echo "$child"
            return 0
        fi
    done
    return 1
}
wait_for 60 "the container's init" container_init
ct_pid=$(container_init)
echo "container $name: nspawn $nspawn_pid, init $ct_pid"
wait_for 120 "the container's boot" ct systemctl is-system-running --wait
echo "system: $(ct systemctl is-system-running || true)"

step "dpkg -i pollerd.deb"
ct dpkg -i /mnt/e2e/pollerd.deb </dev/null
pollerd_passwd=$(ct getent passwd pollerd || true)
echo "getent passwd pollerd: $pollerd_passwd"
pollerd_uid=$(echo "$pollerd_passwd" | cut -d: -f3)
pollerd_gid=$(echo "$pollerd_passwd" | cut -d: -f4)
check "the package created the system user pollerd (uid $pollerd_uid < 1000)" \
    test -n "$pollerd_uid" -a "${pollerd_uid:-1000}" -lt 1000
enabled=$(ct systemctl is-enabled pollerd || true)
active=$(ct systemctl is-active pollerd || true)
echo "is-enabled: $enabled, is-active: $active"
check "install neither enables nor starts the service" test "$enabled" = disabled -a "$active" = inactive
check "/etc/pollerd/instances.d/ exists and is empty" \
    test "$(ct find /etc/pollerd/instances.d -mindepth 1 | wc -l)" -eq 0 -a -n "$(ct ls -d /etc/pollerd/instances.d)"
verify=$(ct systemd-analyze verify pollerd.service 2>&1) && verify_status=0 || verify_status=$?
echo "systemd-analyze verify (inside): ${verify:-clean}"
check "systemd-analyze verify pollerd.service (installed, man pages included) is clean" test "$verify_status" -eq 0 -a -z "$verify"

step "start with an instance polling the simulator"
ct install -m 0640 -o root -g pollerd /mnt/e2e/instance.json /etc/pollerd/instances.d/e2e.json
ct systemctl enable --now pollerd
active=$(ct systemctl is-active pollerd || true)
echo "is-active: $active"
check "systemctl enable --now returned and the unit is active (READY=1 arrived)" test "$active" = active
ct systemctl status pollerd --no-pager --lines=8 | tee "$work/status.txt" || true
check "systemctl status shows the daemon's STATUS= line" grep -q 'Status: "1 instance(s), 1 resource(s)' "$work/status.txt"
main_pid=$(ct systemctl show -p MainPID --value pollerd)

contacts_polls() { curl -fsS "$CONTROL_URL/sim/requests" | jq -e '.contacts >= 1'; }
wait_for 30 "the first poll of contacts" contacts_polls

step "an event delivered, the first attempt refused once (so the daemon logs with its fields)"
curl -fsS -X POST "$CONTROL_URL/receiver/fail-next/503"
first_id=$(curl -fsS -X POST "$CONTROL_URL/contacts" | jq -r .id)
echo "created contact $first_id"
delivered() { # delivered PATH OBJECT_ID: a 2xx notification to PATH holds OBJECT_ID
    # Slurped: jq 1.6's -e succeeds on empty input. A line still being written fails to parse,
    # which only means "not yet".
    jq -se --arg path "$1" --arg id "$2" \
        'any(.[]; .path == $path and .status >= 200 and .status < 300 and (.object_ids | index($id)))' \
        "$share/notifications.jsonl" >/dev/null 2>&1
}
wait_for 60 "contact $first_id delivered to /hook" delivered /hook "$first_id" || true
check "contact $first_id was delivered to the receiver's /hook (after a 503)" delivered /hook "$first_id"
jq -c 'del(.body)' "$share/notifications.jsonl" || true
refused_event=$(jq -r 'select(.status == 503) | .event_id' "$share/notifications.jsonl" | head -n 1 || true)
echo "refused (503) notification: event id ${refused_event:-none}"

step "journalctl -u pollerd -o json: INSTANCE, RESOURCE, EVENT_ID"
journal_fields() {
    ct journalctl -u pollerd -o json --no-pager |
        jq -c --arg event "$refused_event" \
            'select(.INSTANCE == "e2e" and .RESOURCE == "contacts" and .EVENT_ID == $event)
             | {PRIORITY, SYSLOG_IDENTIFIER, INSTANCE, RESOURCE, EVENT_ID, MESSAGE}'
}
has_journal_fields() { [ -n "$refused_event" ] && [ -n "$(journal_fields)" ]; }
wait_for 30 "journal entries of event $refused_event" has_journal_fields || true
journal_fields | tee "$work/fields.txt"
check "journald entries carry INSTANCE=e2e, RESOURCE=contacts and EVENT_ID of the refused notification" \
    test -s "$work/fields.txt"

step "systemctl reload: callback moved to /hook-after-reload"
ct install -m 0640 -o root -g pollerd /mnt/e2e/instance-reloaded.json /etc/pollerd/instances.d/e2e.json
ct systemctl reload pollerd
active=$(ct systemctl is-active pollerd || true)
pid_after=$(ct systemctl show -p MainPID --value pollerd)
restarts=$(ct systemctl show -p NRestarts --value pollerd)
echo "is-active: $active, MainPID $main_pid -> $pid_after, NRestarts $restarts"
check "after reload: still active, same process, no restart" \
    test "$active" = active -a "$pid_after" = "$main_pid" -a "$restarts" = 0
ct journalctl -u pollerd --no-pager -o cat | grep -E '^Reload|instances: ' || true
second_id=$(curl -fsS -X POST "$CONTROL_URL/contacts" | jq -r .id)
wait_for 60 "contact $second_id delivered to /hook-after-reload" delivered /hook-after-reload "$second_id" || true
check "after reload, contact $second_id went to the new callback /hook-after-reload" \
    delivered /hook-after-reload "$second_id"

step "an invalid instance file"
ct sh -c 'cat > /etc/pollerd/instances.d/broken.json' <<'EOF'
{
  "element": { "key": "connectwisecrmrest" },
  "name": "broken",
  "configuration": {
    "baseUrl": "http://127.0.0.1:9/v4_6_release/apis/3.0",
    "company": oops
  }
}
EOF
broken_logged() { ct journalctl -u pollerd --no-pager -o cat | grep -q '^/etc/pollerd/instances.d/broken.json:6:[0-9]*: error'; }
wait_for 30 "the journal naming broken.json:6" broken_logged || true
ct journalctl -u pollerd --no-pager -o cat | grep 'broken.json' | tail -n 3 || true
active=$(ct systemctl is-active pollerd || true)
broken_named=no
broken_logged && broken_named=yes
check "an invalid instance file: still active ($active), the journal names /etc/pollerd/instances.d/broken.json line 6 ($broken_named)" \
    test "$active" = active -a "$broken_named" = yes
third_id=$(curl -fsS -X POST "$CONTROL_URL/contacts" | jq -r .id)
wait_for 60 "contact $third_id delivered" delivered /hook-after-reload "$third_id" || true
check "the valid instance keeps delivering (contact $third_id)" delivered /hook-after-reload "$third_id"

step "restart with the invalid file present (ExecStartPre=-pollerd check)"
ct systemctl restart pollerd
active=$(ct systemctl is-active pollerd || true)
invocation=$(ct systemctl show -p InvocationID --value pollerd)
ct journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="$invocation" | grep -E 'broken.json|checked' | head -n 5 || true
start_pre=$(ct systemctl show -p ExecStartPre pollerd)
echo "$start_pre"
check "restart: active ($active) although 'pollerd check' exited 1 on broken.json" \
    sh -c "[ '$active' = active ] && echo '$start_pre' | grep -q 'ignore_errors=yes .*code=exited ; status=1 '"
ct rm /etc/pollerd/instances.d/broken.json

step "secrets from LoadCredential= (a drop-in, as the README shows)"
ct install -d -m 0700 /etc/pollerd/credentials
ct install -m 0600 /mnt/e2e/credentials/cw-public /mnt/e2e/credentials/cw-private /etc/pollerd/credentials/
ct mkdir -p /etc/systemd/system/pollerd.service.d
ct sh -c 'cat > /etc/systemd/system/pollerd.service.d/credentials.conf' <<'EOF'
[Service]
LoadCredential=cw-public:/etc/pollerd/credentials/cw-public
LoadCredential=cw-private:/etc/pollerd/credentials/cw-private
EOF
ct install -m 0640 -o root -g pollerd /mnt/e2e/instance-credentials.json /etc/pollerd/instances.d/e2e.json
ct systemctl daemon-reload
ct systemctl restart pollerd
ct grep -c 'credential:' /etc/pollerd/instances.d/e2e.json | sed 's/^/credential references in e2e.json: /'
fourth_id=$(curl -fsS -X POST "$CONTROL_URL/contacts" | jq -r .id)
wait_for 60 "contact $fourth_id delivered to /hook-credentials" delivered /hook-credentials "$fourth_id" || true
check "keys from \${credential:…}: contact $fourth_id delivered to /hook-credentials" \
    delivered /hook-credentials "$fourth_id"

step "sandbox: user, capabilities, writable paths"
main_pid=$(ct systemctl show -p MainPID --value pollerd)
ct grep -E '^(Uid|Gid|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$main_pid/status" | tee "$work/proc-status.txt"
check "runs as pollerd (uid $pollerd_uid)" grep -Eq "^Uid:[[:space:]]+${pollerd_uid}[[:space:]]+${pollerd_uid}[[:space:]]" "$work/proc-status.txt"
check "no capabilities, no new privileges, seccomp filter on" \
    sh -c "grep -Eq '^CapEff:[[:space:]]+0+$' '$work/proc-status.txt' && grep -Eq '^CapBnd:[[:space:]]+0+$' '$work/proc-status.txt' &&
           grep -Eq '^NoNewPrivs:[[:space:]]+1$' '$work/proc-status.txt' && grep -Eq '^Seccomp:[[:space:]]+2$' '$work/proc-status.txt'"
# Every directory user pollerd may create files in, as the service sees the file system (its
# mount namespace: ProtectSystem=strict, PrivateTmp, PrivateDevices, ...).
ct nsenter -t "$main_pid" -m setpriv --reuid="$pollerd_uid" --regid="$pollerd_gid" --clear-groups \
    find / -path /proc -prune -o -type d -writable -print 2>/dev/null | sort >"$work/writable.txt" || true
echo "writable directories:"
sed 's/^/  /' "$work/writable.txt"
check "the service can write only under /var/lib/pollerd and /run/pollerd" \
    sh -c "grep -qx /var/lib/pollerd '$work/writable.txt' && grep -qx /run/pollerd '$work/writable.txt' &&
           ! grep -Ev '^/(var/lib|run)/pollerd(/|$)' '$work/writable.txt'"

step "admin socket: group pollerd may use pollerd status, others may not"
ct stat -c '%A %U:%G %n' /run/pollerd /run/pollerd/admin.sock | tee "$work/socket.txt"
check "/run/pollerd is drwxr-x--- and admin.sock srw-rw----, both pollerd:pollerd" \
    sh -c "grep -qx 'drwxr-x--- pollerd:pollerd /run/pollerd' '$work/socket.txt' &&
           grep -qx 'srw-rw---- pollerd:pollerd /run/pollerd/admin.sock' '$work/socket.txt'"
ct useradd --system --no-create-home --groups pollerd e2e-operator
ct useradd --system --no-create-home e2e-outsider
ct runuser -u e2e-operator -- pollerd status | tee "$work/operator.txt" && operator_status=0 || operator_status=$?
check "a member of group pollerd: 'pollerd status' exits 0 and lists instance e2e" \
    sh -c "[ $operator_status -eq 0 ] && grep -q e2e '$work/operator.txt'"
ct runuser -u e2e-outsider -- pollerd status && outsider_status=0 || outsider_status=$?
check "a user outside group pollerd: 'pollerd status' exits 1" test "$outsider_status" -eq 1

step "systemd-analyze security pollerd (inside, the running unit)"
ct systemd-analyze security pollerd --no-pager | grep -E '^✗|Overall exposure' | tee "$work/security.txt" || true
exposure=$(sed -n 's/.*Overall exposure level for pollerd.service: \([0-9.]*\).*/\1/p' "$work/security.txt")
check "exposure ${exposure:-?} <= 2.0" awk -v e="${exposure:-99}" 'BEGIN { exit !(e + 0 <= 2.0) }'

step "reinstall keeps a modified /etc/pollerd/pollerd.toml"
ct sh -c 'echo "# local change kept across upgrades" >> /etc/pollerd/pollerd.toml'
pid_before=$(ct systemctl show -p MainPID --value pollerd)
ct dpkg -i /mnt/e2e/pollerd.deb </dev/null
check "pollerd.toml still holds the local change" ct grep -qx '# local change kept across upgrades' /etc/pollerd/pollerd.toml
active=$(ct systemctl is-active pollerd || true)
pid_after=$(ct systemctl show -p MainPID --value pollerd)
echo "is-active: $active, MainPID $pid_before -> $pid_after"
check "the upgrade restarted the running service (try-restart): active, new process" \
    test "$active" = active -a "$pid_after" != "$pid_before" -a "$pid_after" != 0

step "systemctl stop"
# Test-only drop-in: systemd forgets the main process's exit status once the unit is inactive,
# so have it written to the journal when the service stops.
ct mkdir -p /run/systemd/system/pollerd.service.d
ct sh -c 'cat > /run/systemd/system/pollerd.service.d/e2e-exit-status.conf' <<'EOF'
[Service]
ExecStopPost=/bin/sh -c 'echo "e2e: main process $$EXIT_CODE, status $$EXIT_STATUS, result $$SERVICE_RESULT"'
EOF
ct systemctl daemon-reload
ct systemctl stop pollerd
ct systemctl show -p ActiveState -p Result pollerd | tee "$work/stop.txt"
ct journalctl -u pollerd --no-pager -o cat -n 5 | tee -a "$work/stop.txt"
check "stopped: inactive, result success, main process exited with status 0" \
    sh -c "grep -qx ActiveState=inactive '$work/stop.txt' && grep -qx Result=success '$work/stop.txt' &&
           grep -qx 'e2e: main process exited, status 0, result success' '$work/stop.txt'"

step "an unusable pollerd.toml fails the start (the '-' of ExecStartPre does not hide it)"
ct sh -c 'echo "unknown_setting = 1" >> /etc/pollerd/pollerd.toml'
ct systemctl start pollerd && start_status=0 || start_status=$?
ct systemctl show -p ActiveState -p Result pollerd | tee "$work/bad-settings.txt"
ct journalctl -u pollerd --no-pager -o cat | grep 'pollerd.toml:' | tail -n 2 | tee -a "$work/bad-settings.txt" || true
check "systemctl start exits $start_status (not 0), the unit failed, the journal names pollerd.toml" \
    sh -c "[ $start_status -ne 0 ] && grep -qx Result=exit-code '$work/bad-settings.txt' &&
           grep -q '^/etc/pollerd/pollerd.toml:[0-9]*:[0-9]*: error: unknown field' '$work/bad-settings.txt'"
ct systemctl stop pollerd
ct systemctl reset-failed pollerd || true

if [ "$failed" -ne 0 ]; then
    echo "--- pollerd's journal (last 40 lines), for the failures above"
    ct journalctl -u pollerd --no-pager -n 40 || true
    echo "--- notifications received"
    jq -c 'del(.body)' "$share/notifications.jsonl" || true
fi

echo
echo "test-systemd: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
