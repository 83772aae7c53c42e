#!/bin/sh
# Installs, from Debian, everything imapferry needs to build, test and
# benchmark. Idempotent; run as root on Debian 12.
set -eu
export DEBIAN_FRONTEND=noninteractive
# Keep package postinst scripts from starting system daemons (dovecot,
# postgresql, ...):
# the test harness starts its own throwaway instances.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
fi
apt-get update
apt-get install -y --no-install-recommends \
	build-essential cmake ninja-build pkg-config clang llvm libclang-rt-14-dev \
	libssl-dev libsqlite3-dev libpq-dev zlib1g-dev libcmocka-dev \
	dovecot-core dovecot-imapd dovecot-pop3d isync openssl python3 \
	ca-certificates procps sqlite3 postgresql iproute2 time
# losetup (mount) and mkfs.ext4 (e2fsprogs): test_maildir_target's test_i
# makes journaled and journal-less ext4 file systems on loop devices, and
# bench/ puts each target on a new one.
apt-get install -y --no-install-recommends mount e2fsprogs
# The manual page test (man -l) and the package stage (scripts/package.sh:
# dpkg-buildpackage with debhelper, then man -w on the installed pages).
apt-get install -y --no-install-recommends \
	man-db groff-base debhelper dpkg-dev
# The HTML report's test (tests/integ/test_report_html.py) loads the page
# in headless Chromium: the DOM after the script ran, and screenshots.
apt-get install -y --no-install-recommends chromium

# Cyrus IMAP for the integration tests. cyrus-imapd Conflicts: with
# dovecot-imapd (both provide imap-server), so install only its dependencies
# and unpack the imapd binary itself into a fixed directory
# (shared/docs/SERVERS.md section 1). tests/integ/harness.py looks there.
apt-get install -y --no-install-recommends \
	cyrus-common cyrus-admin cyrus-clients sasl2-bin libsasl2-modules
PKG=/opt/imapferry-pkgs
want=$(dpkg-query -W -f '${Version}' cyrus-common)
if [ "$(cat "$PKG/cyrus-imapd.version" 2>/dev/null)" != "$want" ] ||
	[ ! -x "$PKG/usr/lib/cyrus/bin/imapd" ]; then
	tmp=$(mktemp -d)
	chown _apt "$tmp" 2>/dev/null || true # apt-get download runs as _apt
	(cd "$tmp" && apt-get download "cyrus-imapd=$want")
	mkdir -p "$PKG"
	dpkg-deb -x "$tmp"/cyrus-imapd_*.deb "$PKG"
	echo "$want" >"$PKG/cyrus-imapd.version"
	rm -rf "$tmp"
fi

# Courier-IMAP for the integration tests (tests/integ/test_courier.py).
# courier-imap also Conflicts: with dovecot-imapd, so the same trick: install
# its dependencies (authdaemond, userdb tools, couriertcpd from courier-base),
# and unpack imapd + imaplogin into $PKG (shared/docs/SERVERS.md sections 1, 4).
apt-get install -y --no-install-recommends \
	courier-base courier-authdaemon courier-authlib-userdb gamin libwrap0 \
	libcourier-unicode4 libidn12 libgdbm6 util-linux
want=$(apt-cache policy courier-imap | sed -n 's/^ *Candidate: *//p')
if [ "$(cat "$PKG/courier-imap.version" 2>/dev/null)" != "$want" ] ||
	[ ! -x "$PKG/usr/bin/imapd" ] ||
	[ ! -x "$PKG/usr/lib/courier/courier/imaplogin" ]; then
	tmp=$(mktemp -d)
	chown _apt "$tmp" 2>/dev/null || true # apt-get download runs as _apt
	(cd "$tmp" && apt-get download "courier-imap=$want")
	mkdir -p "$PKG"
	dpkg-deb -x "$tmp"/courier-imap_*.deb "$PKG"
	echo "$want" >"$PKG/courier-imap.version"
	rm -rf "$tmp"
fi
# authlib's socket directory is compiled in; without systemd nothing creates
# it, and the harness bind-mounts its own directory over it.
install -d -o courier -g courier -m 750 /run/courier/authdaemon
