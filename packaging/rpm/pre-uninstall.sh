# On removal ($1 = 0, not an upgrade) stop and disable the service first.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now pollerd.service >/dev/null 2>&1 || :
fi
