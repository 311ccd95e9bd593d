#!/usr/bin/env bash
# Builds tlstap_<version>_<arch>.deb from a built binary with dpkg-deb, reproducing what debhelper
# (compat 13) would produce: dh_installsystemd maintainer scripts, dpkg-shlibdeps Depends, conffiles,
# md5sums, stripped binary, compressed man page and changelog, shell completions in the vendor paths.
#
#   packaging/build-deb.sh BIN VERSION ARCH [OUTDIR]
#
# BIN must carry the Swift runtime statically (`swift build -c release --static-swift-stdlib`): the
# target host has no Swift toolchain, so the package may depend on Debian runtime libraries only.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 BIN VERSION ARCH [OUTDIR]" >&2
    exit 2
fi
BIN=$(realpath "$1")
VERSION=$2
ARCH=$3
OUTDIR=$(realpath "${4:-.}")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PACKAGE=tlstap
DEB="$OUTDIR/${PACKAGE}_${VERSION}_${ARCH}.deb"

for tool in dpkg-deb dpkg-shlibdeps strip gzip python3; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is required (apt-get install dpkg-dev binutils python3)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$0: $BIN is not an executable" >&2; exit 1; }

# A binary that still needs the Swift toolchain's shared runtime would not start on the target.
if swiftlibs=$(ldd "$BIN" | grep -E 'libswift|libFoundation|libdispatch|libBlocksRuntime'); then
    echo "$0: $BIN links the Swift runtime dynamically; build with --static-swift-stdlib:" >&2
    echo "$swiftlibs" >&2
    exit 1
fi

# Timestamps of everything packaged: the last commit, so two builds of one commit are identical.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
DOC="$ROOT/usr/share/doc/$PACKAGE"

install -D -m 0755 "$BIN" "$ROOT/usr/bin/tlstap"
# As dh_strip does for executables (the Swift metadata sections stay; only symbols and notes go).
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$ROOT/usr/bin/tlstap"
install -D -m 0644 "$HERE/tlstap.service" "$ROOT/lib/systemd/system/tlstap.service"
install -D -m 0644 "$REPO/etc/tlstap/tlstap.toml" "$ROOT/etc/tlstap/tlstap.toml"
install -D -m 0644 "$HERE/debian/copyright" "$DOC/copyright"

# Changelog, as dh_installchangelogs would install a one-entry changelog.
{
    echo "$PACKAGE ($VERSION) unstable; urgency=medium"
    echo
    echo "  * Release $VERSION."
    echo
    echo " -- tlstap maintainers <tlstap@localhost>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$WORK/changelog.Debian.gz"
install -m 0644 "$WORK/changelog.Debian.gz" "$DOC/changelog.Debian.gz"

# Man page and completions come from the argument parser itself, so they cannot drift from --help.
python3 "$HERE/manpage.py" "$ROOT/usr/bin/tlstap" "$VERSION" > "$WORK/tlstap.1"
install -d "$ROOT/usr/share/man/man1"
gzip -9n < "$WORK/tlstap.1" > "$ROOT/usr/share/man/man1/tlstap.1.gz"
chmod 0644 "$ROOT/usr/share/man/man1/tlstap.1.gz"
install -d "$ROOT/usr/share/bash-completion/completions" "$ROOT/usr/share/zsh/vendor-completions" \
    "$ROOT/usr/share/fish/vendor_completions.d"
"$ROOT/usr/bin/tlstap" --generate-completion-script bash > "$ROOT/usr/share/bash-completion/completions/tlstap"
"$ROOT/usr/bin/tlstap" --generate-completion-script zsh > "$ROOT/usr/share/zsh/vendor-completions/_tlstap"
"$ROOT/usr/bin/tlstap" --generate-completion-script fish > "$ROOT/usr/share/fish/vendor_completions.d/tlstap.fish"
chmod 0644 "$ROOT"/usr/share/*/completions/tlstap "$ROOT"/usr/share/zsh/vendor-completions/_tlstap \
    "$ROOT"/usr/share/fish/vendor_completions.d/tlstap.fish

# Depends: what dpkg-shlibdeps derives from the binary's NEEDED libraries and their symbols files.
mkdir -p "$WORK/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PACKAGE" "$PACKAGE" > "$WORK/src/debian/control"
DEPENDS=$(cd "$WORK/src" && dpkg-shlibdeps -O "$ROOT/usr/bin/tlstap" 2>"$WORK/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') || {
    cat "$WORK/shlibdeps.err" >&2
    exit 1
}
[ -n "$DEPENDS" ] || { echo "$0: dpkg-shlibdeps found no dependencies" >&2; cat "$WORK/shlibdeps.err" >&2; exit 1; }

install -d -m 0755 "$ROOT/DEBIAN"
INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: $PACKAGE
Version: $VERSION
Architecture: $ARCH
Maintainer: tlstap maintainers <tlstap@localhost>
Installed-Size: $INSTALLED_SIZE
Depends: $DEPENDS
Section: net
Priority: optional
Description: packet capture that Wireshark decrypts on its own
 tlstap records the traffic of every interface in every network namespace
 with eBPF tc programs and reads TLS session secrets from processes using
 OpenSSL with eBPF uprobes. It writes time-rotated, zstd-compressed PcapNG
 segments under /var/lib/tlstap whose Decryption Secrets Blocks come before
 the packets they unlock, so stock Wireshark and tshark decrypt them.
CONTROL
echo /etc/tlstap/tlstap.toml > "$ROOT/DEBIAN/conffiles"
install -m 0755 "$HERE/debian/postinst" "$HERE/debian/prerm" "$HERE/debian/postrm" "$ROOT/DEBIAN/"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | grep -v '^etc/' | LC_ALL=C sort \
    | xargs md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"

find "$ROOT" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$OUTDIR"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
