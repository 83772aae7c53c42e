#!/usr/bin/env bash
# Builds the Debian package (debian/) in a temporary copy of the tree,
# installs it and checks what an administrator gets: the binary, the
# manual pages, the bash completion, the docs. Run as root on Debian 12
# (scripts/test.sh runs it as its "package" stage; PACKAGE=0 skips it).
#
#   ./scripts/package.sh            build, install, check, uninstall
#   KEEP_INSTALLED=1 ./scripts/package.sh   leave the package installed
#   JOBS=4 ./scripts/package.sh     build parallelism (default 2)
#
# The .deb is copied into build-deb/. The build deps come from Debian
# (apt-get, when missing); scripts/install-deps.sh installs them already.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
JOBS=${JOBS:-2}
if [ "$(id -u)" != 0 ]; then
	echo "package.sh: run as root (apt-get install of the package)" >&2
	exit 2
fi

deps="debhelper dpkg-dev cmake ninja-build pkg-config libssl-dev
	libsqlite3-dev zlib1g-dev man-db groff-base"
missing=()
for d in $deps; do
	dpkg-query -W -f '${Status}' "$d" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "package.sh: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${missing[@]}"
fi

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
tmp=$(mktemp -d /tmp/ife-pkg-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/imapferry-$version
mkdir -p "$src"
# the working tree as it is (uncommitted changes too), without builds
tar -C "$top" --exclude=./.git --exclude='./build*' --exclude=./debian/imapferry \
	--exclude='./debian/.debhelper' -cf - . | tar -C "$src" -xf -

echo "package.sh: dpkg-buildpackage in $src"
(cd "$src" && DEB_BUILD_OPTIONS="parallel=$JOBS nocheck" \
	dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || {
	tail -n 60 "$tmp/build.log"
	echo "package.sh: dpkg-buildpackage failed" >&2
	exit 1
}
grep -E 'warning:' "$tmp/build.log" | grep -v '^dpkg' | head -n 20 || true
deb=$(ls "$tmp"/imapferry_"$version"_*.deb)
mkdir -p "$top/build-deb"
cp "$deb" "$top/build-deb/"
echo "package.sh: built build-deb/$(basename "$deb")"
dpkg-deb -c "$deb" | awk '{print $6}' | grep -v '/$'

chmod 755 "$tmp"   # apt reads the .deb as _apt
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$deb"

fail=0
check() { # description command...
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then
		echo "ok   $what"
	else
		echo "FAIL $what"
		fail=1
	fi
}
check "imapferry --help" /usr/bin/imapferry --help
check "imapferry --version is $version" \
	sh -c "/usr/bin/imapferry --version | grep -qx 'imapferry ${version%%-*}'"
for page in imapferry imapferry-ls imapferry-copy imapferry-verify \
	imapferry-plan imapferry-run imapferry-status imapferry-report; do
	check "man -w $page" man -w "$page"
done
check "man imapferry-copy renders" sh -c \
	'MANWIDTH=80 man imapferry-copy 2>&1 >/dev/null | grep -q . && exit 1; man imapferry-copy | grep -q delete-missing'
comp=/usr/share/bash-completion/completions/imapferry
check "$comp" test -s "$comp"
check "the completion loads" bash -c ". $comp && complete -p imapferry"
check "README.md in /usr/share/doc/imapferry" \
	sh -c 'ls /usr/share/doc/imapferry/README.md* && ls /usr/share/doc/imapferry/TESTING.md*'
check "imapferry-bench not installed" sh -c '! command -v imapferry-bench'

if [ "${KEEP_INSTALLED:-0}" != 1 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get remove -y imapferry >/dev/null
fi
if [ "$fail" != 0 ]; then
	echo "package.sh: FAILED"
	exit 1
fi
echo "package.sh: ok"
