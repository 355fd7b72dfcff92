# The daemon's user and group, then make systemd see the (new or changed) unit. The service is
# never started here; on an upgrade ($1 > 1) it is restarted only if it was running.
systemd-sysusers /usr/lib/sysusers.d/pollerd.conf || :
# Where instance files go (cargo-generate-rpm cannot ship an empty directory).
install -d -m 0755 /etc/pollerd/instances.d
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -gt 1 ]; then
        systemctl try-restart pollerd.service >/dev/null 2>&1 || :
    fi
fi
