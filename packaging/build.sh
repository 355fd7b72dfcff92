#!/usr/bin/env bash
# Builds the .deb and the .rpm of pollerd:
#
#   bash packaging/build.sh
#
# -> $CARGO_TARGET_DIR/packages/pollerd_<version>-1_<arch>.deb and pollerd-<version>-1.<arch>.rpm
#    (CARGO_TARGET_DIR defaults to ./target). Installs cargo-deb and cargo-generate-rpm with
#    `cargo install` when missing. Needs dpkg-deb (any Debian or Ubuntu) and objcopy (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
case "$target_dir" in /*) ;; *) target_dir=$PWD/$target_dir ;; esac
out_dir=$target_dir/packages
generated=$target_dir/release/generated

step() { printf '\n== %s\n' "$*"; }

# `cargo install` builds in its own temporary directory, so our CARGO_TARGET_DIR is not touched.
ensure_cargo_tool() {
    local crate=$1 version=$2 subcommand=$3
    if ! cargo "$subcommand" --version >/dev/null 2>&1; then
        step "installing $crate $version"
        env -u CARGO_TARGET_DIR cargo install --locked --version "$version" "$crate"
    fi
}
ensure_cargo_tool cargo-deb "$CARGO_DEB_VERSION" deb
ensure_cargo_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" generate-rpm
for tool in dpkg-deb objcopy; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is required" >&2; exit 1; }
done

step "release build"
cargo build --release --locked --bin pollerd
binary=$target_dir/release/pollerd

step "man pages and shell completions (pollerd generate)"
rm -rf "$generated"
"$binary" generate man --out-dir "$generated/man"
gzip -9n "$generated/man"/*.1
"$binary" generate bash --out-dir "$generated/completions"
"$binary" generate zsh --out-dir "$generated/completions"

mkdir -p "$out_dir"
rm -f "$out_dir"/pollerd*.deb "$out_dir"/pollerd*.rpm

step "cargo deb"
cargo deb --no-build --locked --strip --output "$out_dir"
deb=$(echo "$out_dir"/pollerd_*.deb)

# cargo-deb packages files only; the empty /etc/pollerd/instances.d/ is added with dpkg-deb
# (unpacked with its control files, which dpkg-deb keeps as they are).
repack=$(mktemp -d)
trap 'rm -rf "$repack"' EXIT
dpkg-deb --raw-extract "$deb" "$repack/root"
install -d -m 0755 "$repack/root/etc/pollerd/instances.d"
dpkg-deb --root-owner-group -Zxz --build "$repack/root" "$deb" >/dev/null

step "cargo generate-rpm"
# cargo-generate-rpm packages the binary as it is: give it a copy without debug info.
objcopy --strip-debug "$binary" "$generated/pollerd"
cargo generate-rpm --target-dir "$target_dir" --output "$out_dir/"
rpm_file=$(echo "$out_dir"/pollerd-*.rpm)

step "built"
ls -l "$deb" "$rpm_file"
