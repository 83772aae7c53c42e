"""Integration-test harness for imapferry (Python 3 standard library only).

Tests are plain scripts run by ctest as ``python3 tests/integ/test_x.py`` with
the environment variables

  IMAPFERRY_BIN    the imapferry binary under test
  IMAPFERRY_SRC    the repository root
  IMAPFERRY_BUILD  the build directory

What is here:
  Dovecot(...), Cyrus(...),  throwaway servers on 127.0.0.1 (context managers)
  Courier(...)
  gen_corpus(...)            the deterministic corpus of shared/corpus/gen.py
  expected_folders(...)      per-folder message counts and RFC822.SIZE totals
  oracle_folders(conn)       the same, asked of a server through imaplib
  run_ferry(...)             runs the binary under test
  run_tests()                a tiny runner: test_* functions in file order
  skip(reason)               marks the current test as skipped

The oracle for every check is Python's imaplib or the corpus on disk, never
imapferry itself. IMAPFERRY_KEEP=1 keeps each server's directory (config, log,
mail) after the test; the path is printed on stderr. See docs/TESTING.md.
"""

import atexit
import base64
import hashlib
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("IMAPFERRY_SRC") or os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("IMAPFERRY_BUILD") or os.path.join(SRC, "build")
BIN = os.environ.get("IMAPFERRY_BIN") or os.path.join(BUILD, "src", "cli", "imapferry")
KEEP = os.environ.get("IMAPFERRY_KEEP") == "1"
HOST = "127.0.0.1"
MAIL_UID = MAIL_GID = 8          # Debian's "mail" user and group
CYRUS_PKG = os.environ.get("IMAPFERRY_PKG_DIR", "/opt/imapferry-pkgs")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Skipping and the test runner

class Skip(Exception):
    """Raised by skip(): the current test is reported as skipped."""


def skip(reason):
    raise Skip(reason)


_servers = []       # live servers, for log tails on failure and atexit cleanup


def run_tests(ns=None, argv=None, setup=None):
    """Run the test_* functions of the calling module in file order.

    setup: an optional context-manager factory (e.g. a @contextmanager that
    starts the servers) entered around all tests. If it raises Skip, every
    test is reported skipped; any other exception counts as one failure.

    Prints "ok NAME", "FAIL NAME" (with the traceback and the tail of each
    live server's log) or "skip NAME: reason" per test, then a last line
    "N passed, M failed". Command-line arguments (or IMAPFERRY_TEST_FILTER,
    comma-separated) select tests whose name contains one of them. Exits the
    process: 0 when nothing failed, 1 otherwise.
    """
    if ns is None:
        ns = sys._getframe(1).f_globals
    if argv is None:
        argv = sys.argv[1:]
    filters = [a for a in argv if not a.startswith("-")]
    env_filter = os.environ.get("IMAPFERRY_TEST_FILTER")
    if env_filter:
        filters += [f for f in env_filter.split(",") if f]
    tests = [f for n, f in ns.items() if n.startswith("test_") and callable(f)
             and getattr(f, "__module__", None) == ns.get("__name__")]
    tests.sort(key=lambda f: f.__code__.co_firstlineno)
    if filters:
        tests = [f for f in tests if any(x in f.__name__ for x in filters)]
    if setup is not None:
        try:
            with setup():
                _run_list(tests)
        except Skip as e:
            print(f"skip all {len(tests)} tests: {e}")
            print("0 passed, 0 failed", flush=True)
            sys.exit(0)
        except (KeyboardInterrupt, SystemExit):     # SystemExit: _run_list's exit
            raise
        except Exception:  # noqa: BLE001
            print("FAIL setup", flush=True)
            traceback.print_exc(file=sys.stdout)
            print("0 passed, 1 failed", flush=True)
            sys.exit(1)
    _run_list(tests)


def _run_list(tests):
    passed = failed = skipped = 0
    for f in tests:
        t0 = time.monotonic()
        try:
            f()
        except Skip as e:
            skipped += 1
            print(f"skip {f.__name__}: {e}", flush=True)
        except BaseException as e:  # noqa: B902 - report everything, even SystemExit
            if isinstance(e, (KeyboardInterrupt, Terminated)):
                raise
            failed += 1
            print(f"FAIL {f.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            traceback.print_exc(file=sys.stdout)
            for s in list(_servers):
                s.print_log_tail()
            sys.stdout.flush()
        else:
            passed += 1
            print(f"ok {f.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
    if skipped:
        print(f"({skipped} skipped)")
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


# --------------------------------------------------------------------------
# Small utilities

def require_root():
    if os.geteuid() != 0:
        skip("needs root (throwaway servers drop privileges to mail/cyrus)")


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (free now; a race is retried by the caller)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def short_tempdir(tag, base=None):
    """A short directory under /tmp, or base (unix socket paths are limited to
    ~107 bytes)."""
    d = tempfile.mkdtemp(prefix=f"ife-{tag[:8]}-", dir=base or "/tmp")
    os.chmod(d, 0o755)      # servers drop privileges and must traverse it
    return d


def chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


def proc_alive(pid):
    """True if pid exists and is not a zombie (kill -0 succeeds on zombies)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(")") + 2:].split()[0]
    return state not in ("Z", "X")


def descendants(pid):
    """All live descendant pids of pid (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def stop_pid(pid, grace=10.0):
    """SIGTERM pid (and, if it hangs, SIGKILL it and its descendants)."""
    if not proc_alive(pid):
        return
    kids = descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not proc_alive(pid):
            break
        time.sleep(0.05)
    else:
        log(f"harness: pid {pid} ignored SIGTERM for {grace:.0f}s, sending SIGKILL")
    for p in [pid] + kids:
        if proc_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_greeting(host, port, timeout=2.0, tls_context=None):
    """Connect, return the first line the server sends (b'' on failure)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if tls_context is not None:
                s = tls_context.wrap_socket(s, server_hostname=host)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            return buf
    except OSError:
        return b""


# --------------------------------------------------------------------------
# Modified UTF-7 (RFC 3501 5.1.3), for expected folder names

def mutf7_encode(name):
    res, buf = [], ""

    def flush():
        nonlocal buf
        if buf:
            b = base64.b64encode(buf.encode("utf-16-be")).decode().rstrip("=")
            res.append("&" + b.replace("/", ",") + "-")
            buf = ""
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            res.append("&-" if ch == "&" else ch)
        else:
            buf += ch
    flush()
    return "".join(res)


def mutf7_decode(name):
    def dec(m):
        s = m.group(1)
        if s == "":
            return "&"
        s = s.replace(",", "/")
        s += "=" * (-len(s) % 4)
        return base64.b64decode(s).decode("utf-16-be")
    return re.sub(r"&([A-Za-z0-9+,]*)-", dec, name)


# --------------------------------------------------------------------------
# TLS certificate: one self-signed certificate per process

_cert = None


def cert_files():
    """(cert_path, key_path) of a self-signed cert for IP:127.0.0.1, DNS:localhost."""
    global _cert
    if _cert is None:
        d = tempfile.mkdtemp(prefix="ife-cert-", dir="/tmp")
        os.chmod(d, 0o755)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.chmod(cert, 0o644)
        _cert = (cert, key)
        if not KEEP:
            atexit.register(shutil.rmtree, d, True)
    return _cert


def client_tls_context(cafile=None):
    ctx = ssl.create_default_context(cafile=cafile or cert_files()[0])
    return ctx


# --------------------------------------------------------------------------
# Servers

class _Server:
    """Common parts: ports, imaplib clients, log tails, cleanup."""

    kind = "server"
    host = HOST
    port = tls_port = pop3_port = None
    log_path = None
    dir = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        # a test failing inside the with block: this server's log goes
        # with the failure (it is gone from _servers when the runner
        # prints the logs of the servers still running)
        if exc_type is not None and not issubclass(exc_type, (KeyboardInterrupt, SystemExit, Skip)):
            try:
                self.print_log_tail(60)
            except Exception:  # noqa: BLE001 - never mask the test's error
                pass
        self.stop()
        return False

    def imap(self, user, password, tls="none", authzid=None, timeout=30):
        """A logged-in imaplib client (the independent oracle).

        tls: "none" (plain), "starttls", or "implicit" (the imaps port). The
        certificate is verified against this process's self-signed cert.
        authzid: log in with AUTHENTICATE PLAIN as authcid=user on behalf of
        authzid (Dovecot master user, Cyrus admin proxy).
        """
        if tls == "implicit":
            c = imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=client_tls_context(),
                                  timeout=timeout)
        else:
            c = imaplib.IMAP4(self.host, self.port, timeout=timeout)
            if tls == "starttls":
                c.starttls(ssl_context=client_tls_context())
            elif tls != "none":
                raise ValueError(f"tls={tls!r}")
        if authzid is not None:
            tok = f"{authzid}\0{user}\0{password}".encode()
            c.authenticate("PLAIN", lambda _: tok)
        else:
            c.login(user, password)
        return c

    def print_log_tail(self, lines=30):
        if not self.log_path or not os.path.exists(self.log_path):
            return
        with open(self.log_path, "rb") as f:
            tail = f.read().splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {self.log_path}")
        for ln in tail:
            print("  " + ln.decode("utf-8", "replace"))

    def _wait_ready(self, timeout, alive):
        """Poll until the greeting carries CAPABILITY (not Dovecot's
        "Waiting for authentication process")."""
        deadline = time.monotonic() + timeout
        last = b""
        while time.monotonic() < deadline:
            last = read_greeting(self.host, self.port)
            if b"CAPABILITY" in last:
                self.greeting = last.decode("utf-8", "replace").rstrip("\r\n")
                return
            if not alive():
                break
            time.sleep(0.05)
        self.print_log_tail()
        raise RuntimeError(f"{self.kind} on port {self.port} not ready (last greeting {last!r})")

    def _cleanup_dir(self):
        if self.dir and os.path.isdir(self.dir):
            if KEEP:
                log(f"harness: IMAPFERRY_KEEP=1, kept {self.kind} directory {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)


def _stop_all():
    for s in list(_servers):
        try:
            s.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            traceback.print_exc()


atexit.register(_stop_all)


class Terminated(SystemExit):
    """SIGTERM/SIGHUP arrived (ctest timeout, ^C of a wrapper): unwind and stop."""


def _term_to_exit(signum, frame):
    raise Terminated(128 + signum)


# ctest (timeouts) and ^C: unwind so that "with" blocks stop their servers.
for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        if signal.getsignal(_sig) in (signal.SIG_DFL, None):
            signal.signal(_sig, _term_to_exit)
    except (ValueError, OSError):   # not the main thread
        pass


class Dovecot(_Server):
    """A throwaway Dovecot 2.3 (IMAP + POP3) on 127.0.0.1.

    users:       {name: password}; Maildir at maildir(name).
    master:      (name, password) of a master user (login "alice*master", or
                 PLAIN with authzid), or None.
    separator, prefix: of the inbox namespace ("/" and "" by default; "." and
                 "INBOX." imitate Courier).
    ssl:         STARTTLS + imaps with this process's self-signed cert.
    special_use: {folder: "\\Sent", ...} for the inbox namespace.
    extra_conf:  text appended to dovecot.conf.
    """

    kind = "dovecot"

    def __init__(self, name, users=None, master=("master", "masterpw"), separator="/",
                 prefix="", ssl=True, extra_conf="", special_use=None, base_dir=None):
        self.name = name
        self.users = dict(users if users is not None else {"alice": "alicepw"})
        self.master = master
        self.separator = separator
        self.prefix = prefix
        self.ssl = ssl
        self.extra_conf = extra_conf
        self.special_use = dict(special_use or {})
        self.dir = short_tempdir(name, base_dir)
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.pid_path = os.path.join(self.dir, "run", "master.pid")
        self.data_dir = os.path.join(self.dir, "data")
        self.cert_path, self.key_path = cert_files() if ssl else (None, None)
        self.pid = None
        self.greeting = None
        os.makedirs(self.data_dir)
        os.chown(self.data_dir, MAIL_UID, MAIL_GID)
        self._write_auth_files()

    def maildir(self, user):
        return os.path.join(self.data_dir, user, "Maildir")

    def load_maildir(self, user, src_dir):
        """Copy a Maildir++ tree (gen.py --maildir: CORPUS/USER/Maildir, or CORPUS/USER)
        into user's Maildir, keeping mtimes (INTERNALDATE); chown mail:mail."""
        if os.path.isdir(os.path.join(src_dir, "Maildir")):
            src_dir = os.path.join(src_dir, "Maildir")
        home = os.path.join(self.data_dir, user)
        shutil.copytree(src_dir, self.maildir(user), dirs_exist_ok=True)
        chown_tree(home, MAIL_UID, MAIL_GID)

    def _write_auth_files(self):
        with open(os.path.join(self.dir, "users"), "w") as f:
            for u, pw in self.users.items():
                f.write(f"{u}:{pw}::::::\n")
        if self.master:
            with open(os.path.join(self.dir, "master-users"), "w") as f:
                f.write(f"{self.master[0]}:{self.master[1]}\n")

    def add_user(self, user, password):
        """Add a user (works while running: passwd-file is re-read on change)."""
        self.users[user] = password
        self._write_auth_files()

    def _config(self):
        T = self.dir
        mailboxes = "".join(
            f'  mailbox "{box}" {{\n    special_use = {use}\n  }}\n'
            for box, use in self.special_use.items())
        ssl_conf = (f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}\n"
                    if self.ssl else "ssl = no\n")
        master = (f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {T}/master-users\n"
                  f"  master = yes\n  pass = yes\n}}\n" if self.master else "")
        return f"""# written by tests/integ/harness.py
base_dir = {T}/run
state_dir = {T}/state
instance_name = ife-{self.port}
log_path = {T}/dovecot.log
protocols = imap pop3
listen = {HOST}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
first_valid_uid = {MAIL_UID}
first_valid_gid = {MAIL_GID}
mail_location = maildir:{T}/data/%u/Maildir
mail_fsync = never
mail_max_userip_connections = 100
# Tests fail logins on purpose: no reply delay, and no per-IP penalty (which
# would slow every later login by up to 15 s). Dovecot 2.3 has no setting for
# the penalty; auth disables it when it cannot reach anvil's penalty socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{ssl_conf}namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix = {self.prefix}
{mailboxes}}}
service imap {{
  process_limit = 256
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.tls_port if self.ssl else 0}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
{master}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {T}/users
}}
userdb {{
  driver = passwd-file
  args = {T}/users
  default_fields = uid=mail gid=mail home={T}/data/%u
}}
{self.extra_conf}
"""

    def start(self, timeout=20):
        if os.geteuid() != 0:
            skip("Dovecot instances need root")
        if not shutil.which("dovecot"):
            skip("dovecot is not installed (scripts/install-deps.sh)")
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()     # kill what started, remove the directory
            raise

    def _start(self, timeout):
        for attempt in range(5):
            self.port, self.tls_port, self.pop3_port = free_ports(3)
            if not self.ssl:
                self.tls_port = None
            with open(self.conf_path, "w") as f:
                f.write(self._config())
            # Not a pipe: the daemonized master would keep it open forever.
            with tempfile.TemporaryFile() as out_f:
                p = subprocess.run(["dovecot", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                                   stdout=out_f, stderr=out_f)
                out_f.seek(0)
                out = out_f.read().decode("utf-8", "replace")
            if p.returncode == 0:
                break
            if "Address already in use" in out and attempt < 4:
                continue        # lost a port race with another test: new ports
            raise RuntimeError(f"dovecot -c {self.conf_path} failed: {out}")
        deadline = time.monotonic() + timeout
        while True:     # the file may exist before the pid is written
            try:
                with open(self.pid_path) as f:
                    self.pid = int(f.read().split()[0])
                break
            except (FileNotFoundError, ValueError, IndexError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot wrote no pid to {self.pid_path}")
                time.sleep(0.02)
        _servers.append(self)
        self._wait_ready(timeout, lambda: proc_alive(self.pid))
        return self

    def stop(self):
        if self in _servers:
            _servers.remove(self)
        if self.pid:
            stop_pid(self.pid)
            self.pid = None
        self._cleanup_dir()

    def doveadm(self, *args, check=True):
        """Run doveadm against this instance; returns CompletedProcess (text)."""
        return subprocess.run(["doveadm", "-c", self.conf_path, *args], check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def url(self, user, scheme="imap", query=""):
        port = self.tls_port if scheme == "imaps" else self.port
        return f"{scheme}://{user}@{self.host}:{port}{query}"


class Cyrus(_Server):
    """A throwaway Cyrus IMAP 3.6 (master + the unpacked imapd) on 127.0.0.1.

    Legacy 2.x-style namespace: INBOX. prefix, "." separator
    (unixhierarchysep: no, altnamespace: no); admin "cyrusadmin". Users live
    in a private sasldb. No TLS. Cyrus logs only through syslog(3), which
    goes nowhere here.
    """

    kind = "cyrus"
    separator = "."
    prefix = "INBOX."
    realm = "cyrus-test"

    def __init__(self, name, users=None, admin=("cyrusadmin", "adminpw")):
        self.name = name
        self.users = dict(users if users is not None else {"alice": "alicepw"})
        self.admin = admin
        self.dir = short_tempdir(name)
        self.conf_path = os.path.join(self.dir, "etc", "imapd.conf")
        self.pid_path = os.path.join(self.dir, "master.pid")
        self.log_path = os.path.join(self.dir, "log", "master.log")
        self.imapd = os.path.join(CYRUS_PKG, "usr/lib/cyrus/bin/imapd")
        self.pid = None
        self.greeting = None
        self.cert_path = None

    def _setup(self):
        import grp
        import pwd
        uid = pwd.getpwnam("cyrus").pw_uid
        gid = grp.getgrnam("mail").gr_gid
        C = self.dir
        for d in ("etc", "lib/db", "lib/socket", "lib/log", "lib/msg", "lib/proc",
                  "lib/ptclient", "lib/quota", "lib/sieve", "lib/user", "spool",
                  "run/proc", "run/lock", "run/socket", "tmp", "sieve", "log"):
            os.makedirs(os.path.join(C, d), exist_ok=True)
        with open(self.conf_path, "w") as f:
            f.write(f"""configdirectory: {C}/lib
defaultpartition: default
partition-default: {C}/spool
proc_path: {C}/run/proc
mboxname_lockpath: {C}/run/lock
lmtpsocket: {C}/run/socket/lmtp
idlesocket: {C}/run/socket/idle
notifysocket: {C}/run/socket/notify
temp_path: {C}/tmp
sievedir: {C}/sieve
servername: {self.realm}
admins: {self.admin[0]}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {C}/etc/sasldb2
sasl_mech_list: PLAIN LOGIN CRAM-MD5 DIGEST-MD5
unixhierarchysep: no
altnamespace: no
mailbox_legacy_dirs: yes
hashimapspool: no
munge8bit: no
autocreate_quota: 0
umask: 077
""")
        conf = self.conf_path
        with open(os.path.join(C, "etc", "cyrus.conf"), "w") as f:
            f.write(f"""START {{
  recover cmd="/usr/lib/cyrus/bin/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{self.imapd} -C {conf} -U 30" listen="{HOST}:{self.port}" proto="tcp4" prefork=0 maxchild=50
}}
EVENTS {{
  checkpoint cmd="/usr/lib/cyrus/bin/ctl_cyrusdb -C {conf} -c" period=30
}}
DAEMON {{
}}
""")
        for user, pw in [self.admin] + list(self.users.items()):
            self._saslpasswd(user, pw)
        chown_tree(C, uid, gid)
        os.chown(C, 0, 0)
        os.chmod(os.path.join(C, "etc", "sasldb2"), 0o640)

    def _saslpasswd(self, user, pw):
        subprocess.run(["saslpasswd2", "-f", os.path.join(self.dir, "etc", "sasldb2"),
                        "-u", self.realm, "-p", "-c", user],
                       input=pw.encode(), check=True)

    def add_user(self, user, password):
        self.users[user] = password
        self._saslpasswd(user, password)
        os.chown(os.path.join(self.dir, "etc", "sasldb2"),
                 __import__("pwd").getpwnam("cyrus").pw_uid, MAIL_GID)

    def start(self, timeout=20):
        if os.geteuid() != 0:
            skip("Cyrus instances need root")
        if not os.access(self.imapd, os.X_OK) or not os.path.exists("/usr/lib/cyrus/bin/master"):
            skip(f"Cyrus not installed ({self.imapd}; run scripts/install-deps.sh)")
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout):
        self.port = free_ports(1)[0]
        self._setup()
        subprocess.run(["/usr/lib/cyrus/bin/master", "-C", self.conf_path,
                        "-M", os.path.join(self.dir, "etc", "cyrus.conf"),
                        "-p", self.pid_path, "-L", self.log_path, "-d"],
                       check=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.pid_path) as f:
                    self.pid = int(f.read().split()[0])
                break
            except (FileNotFoundError, ValueError, IndexError):
                if time.monotonic() > deadline:
                    raise RuntimeError("cyrus master wrote no pid file")
                time.sleep(0.02)
        _servers.append(self)
        self._wait_ready(timeout, lambda: proc_alive(self.pid))
        # Users' INBOXes: created by the admin (dotted names never get one).
        a = self.imap_admin()
        try:
            for user in self.users:
                self.create_user(user, a)
        finally:
            a.logout()
        return self

    def create_user(self, user, admin_conn=None):
        a = admin_conn or self.imap_admin()
        typ, data = a.create(f"user.{user}")
        if typ != "OK" and b"exists" not in b" ".join(data).lower():
            raise RuntimeError(f"CREATE user.{user}: {data}")
        if admin_conn is None:
            a.logout()

    def load_corpus(self, user, rows):
        """Fill user's mailbox with the manifest rows over IMAP (as the admin,
        on behalf of user); folder "A/B" becomes "INBOX.A.B"."""
        c = self.imap(self.admin[0], self.admin[1], authzid=user)
        try:
            return append_rows(c, rows, user, self.separator, self.prefix)
        finally:
            c.logout()

    def imap_admin(self):
        return self.imap(*self.admin)

    def imap(self, user, password, tls="none", authzid=None, timeout=30):
        if tls != "none":
            raise ValueError("the Cyrus harness has no TLS")
        return super().imap(user, password, tls, authzid, timeout)

    def stop(self):
        if self in _servers:
            _servers.remove(self)
        if self.pid:
            stop_pid(self.pid)
            self.pid = None
        self._cleanup_dir()

    def url(self, user, scheme="imap", query="?tls=none"):
        return f"{scheme}://{user}@{self.host}:{self.port}{query}"


class Courier(_Server):
    """A throwaway Courier-IMAP 5 (authdaemond + couriertcpd + the unpacked
    imaplogin/imapd) on 127.0.0.1, in a private mount namespace.

    authlib's paths are compiled in (/etc/courier, /run/courier/authdaemon),
    so the instance runs under `unshare --mount` with its own directories
    bind-mounted over them (shared/docs/SERVERS.md section 4). Users are in a
    private userdb; each has home $K/home/NAME and Maildir maildir(NAME),
    owned by courier:courier. Namespace "INBOX." with "." separator. No TLS.
    IMAP_KEYWORDS=1; IMAP_EMPTYTRASH is empty (nothing purged at login).
    SELECT/EXAMINE return no UIDNEXT: use STATUS. Courier ignores the PLAIN
    authzid (it logs in as the authcid). stop() ends every process of the
    namespace (imapd sessions, gam_server), so the bind mounts go with it.
    """

    kind = "courier"
    separator = "."
    prefix = "INBOX."

    def __init__(self, name, users=None, env=None):
        self.name = name
        self.users = dict(users if users is not None else {"alice": "alicepw"})
        self.extra_env = dict(env or {})
        self.dir = short_tempdir(name)
        self.log_path = os.path.join(self.dir, "imapd.log")
        self.imapd = os.path.join(CYRUS_PKG, "usr/bin/imapd")
        self.imaplogin = os.path.join(CYRUS_PKG, "usr/lib/courier/courier/imaplogin")
        self.pids = []
        self.mntns = None
        self.greeting = None

    def home(self, user):
        return os.path.join(self.dir, "home", user)

    def maildir(self, user):
        return os.path.join(self.home(user), "Maildir")

    @staticmethod
    def _ids():
        import grp
        import pwd
        return pwd.getpwnam("courier").pw_uid, grp.getgrnam("courier").gr_gid

    def _setup(self):
        uid, gid = self._ids()
        K = self.dir
        os.makedirs(os.path.join(K, "etc"), exist_ok=True)
        os.makedirs(os.path.join(K, "home"), exist_ok=True)
        os.makedirs(os.path.join(K, "authdaemon"), mode=0o750, exist_ok=True)
        os.chown(os.path.join(K, "authdaemon"), uid, gid)
        os.chmod(os.path.join(K, "authdaemon"), 0o750)
        with open(os.path.join(K, "etc", "authdaemonrc"), "w") as f:
            f.write('authmodulelist="authuserdb"\ndaemons=3\n'
                    'authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\n')
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "IMAP_CAPABILITY": '"IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE AUTH=PLAIN"',
            "IMAP_KEYWORDS": "1",
            "IMAP_USELOCKS": "1",
            "IMAP_TLS_REQUIRED": "0",
            "IMAP_STARTTLS": "NO",
            "IMAP_EMPTYTRASH": "",
            "MAILDIRPATH": "Maildir",
        }
        env.update(self.extra_env)
        with open(os.path.join(K, "etc", "imapd.env"), "w") as f:
            for k, v in env.items():
                f.write(f"{k}={v}\n")
        udb = os.path.join(K, "etc", "userdb")
        fd = os.open(udb, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        os.chmod(udb, 0o600)
        for user, pw in self.users.items():
            self._add_userdb(user, pw)
        self._makeuserdb()

    def _add_userdb(self, user, pw):
        uid, gid = self._ids()
        udb = os.path.join(self.dir, "etc", "userdb")
        home, md = self.home(user), self.maildir(user)
        os.makedirs(home, exist_ok=True)
        if not os.path.isdir(os.path.join(md, "cur")):
            subprocess.run(["maildirmake", md], check=True, stdin=subprocess.DEVNULL)
        chown_tree(home, uid, gid)
        subprocess.run(["userdb", "-f", udb, user, "set", f"uid={uid}", f"gid={gid}",
                        f"home={home}", f"mail={md}"], check=True, stdin=subprocess.DEVNULL)
        h = subprocess.run(["userdbpw", "-md5"], input=f"{pw}\n{pw}\n".encode(),
                           stdout=subprocess.PIPE, check=True).stdout.strip()
        subprocess.run(["userdb", "-f", udb, user, "set", "systempw"], input=h + b"\n",
                       check=True)

    def _makeuserdb(self):
        subprocess.run(["makeuserdb", "-f", os.path.join(self.dir, "etc", "userdb")],
                       check=True, stdin=subprocess.DEVNULL)

    def add_user(self, user, password):
        """Add a user (while running too: authuserdb reopens userdb.dat)."""
        self.users[user] = password
        self._add_userdb(user, password)
        self._makeuserdb()

    def start(self, timeout=20):
        if os.geteuid() != 0:
            skip("Courier instances need root (mount namespace, bind mounts)")
        missing = [p for p in (self.imapd, self.imaplogin,
                               "/usr/lib/courier/courier-authlib/authdaemond",
                               "/usr/sbin/couriertcpd", "/usr/sbin/makeuserdb")
                   if not os.access(p, os.X_OK)]
        if missing or not shutil.which("unshare"):
            skip(f"Courier not installed ({', '.join(missing) or 'unshare'}; "
                 f"run scripts/install-deps.sh)")
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout):
        uid, gid = self._ids()
        # the mount points (nothing creates the second one without systemd)
        os.makedirs("/etc/courier", exist_ok=True)
        os.makedirs("/run/courier/authdaemon", mode=0o750, exist_ok=True)
        os.chown("/run/courier/authdaemon", uid, gid)
        self._setup()
        K = self.dir
        for attempt in range(5):
            self.port = free_ports(1)[0]
            for p in ("couriertcpd.pid", "authdaemond.pid"):
                try:
                    os.unlink(os.path.join(K, p))
                except FileNotFoundError:
                    pass
            script = f"""set -e
mount --bind {K}/etc /etc/courier
mount --bind {K}/authdaemon /run/courier/authdaemon
env -i setsid /usr/lib/courier/courier-authlib/authdaemond </dev/null >>{K}/authdaemond.log 2>&1 &
echo $! >{K}/authdaemond.pid
i=0
while [ ! -S {K}/authdaemon/socket ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
env -i /bin/sh -c 'set -a; . {K}/etc/imapd.env; set +a
  exec /usr/sbin/couriertcpd -address={HOST} -pid={K}/couriertcpd.pid \\
    -maxprocs=40 -maxperip=40 -nodnslookup -noidentlookup -stderr={K}/imapd.log \\
    {self.port} {self.imaplogin} {self.imapd} Maildir' </dev/null
"""
            with open(os.path.join(K, "start.log"), "ab") as out:
                p = subprocess.run(["unshare", "--mount", "--propagation", "private", "--",
                                    "/bin/sh", "-s"], input=script.encode(),
                                   stdout=out, stderr=out, timeout=timeout)
            # couriertcpd binds before it backgrounds: a lost port race
            # (another test took the port) shows as a non-zero exit
            self._read_pids(timeout, tcpd=p.returncode == 0)
            if p.returncode != 0:
                text = self._file_text("start.log")
                self._stop_processes()
                if "Address already in use" in text and attempt < 4:
                    continue        # new port
                raise RuntimeError(f"courier start script exited {p.returncode}: {text}")
            if self not in _servers:
                _servers.append(self)
            self._wait_ready(timeout, self._alive)
            break
        return self

    def _file_text(self, name):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _read_pids(self, timeout, tcpd=True):
        self.pids, deadline = [], time.monotonic() + timeout
        for name in ("authdaemond.pid", "couriertcpd.pid") if tcpd else ("authdaemond.pid",):
            while True:
                try:
                    with open(os.path.join(self.dir, name)) as f:
                        self.pids.append(int(f.read().split()[0]))
                    break
                except (FileNotFoundError, ValueError, IndexError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"courier wrote no {name}: "
                                           f"{self._file_text('start.log')}")
                    time.sleep(0.02)
        host_ns = os.readlink("/proc/self/ns/mnt")
        for pid in self.pids:
            try:
                ns = os.readlink(f"/proc/{pid}/ns/mnt")
            except OSError:
                continue
            if ns != host_ns:
                self.mntns = ns
                break

    def _alive(self):
        return bool(self.pids) and all(proc_alive(p) for p in self.pids)

    def _ns_pids(self):
        """Live pids in this instance's mount namespace."""
        out = []
        if not self.mntns:
            return out
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                if os.readlink(f"/proc/{d}/ns/mnt") == self.mntns and proc_alive(int(d)):
                    out.append(int(d))
            except OSError:
                continue
        return out

    def _stop_processes(self, grace=10.0):
        for pid in self.pids:
            if proc_alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for pid in self._ns_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            left = [p for p in self.pids if proc_alive(p)] + self._ns_pids()
            if not left:
                break
            time.sleep(0.05)
        else:
            log(f"harness: courier processes {left} ignored SIGTERM, sending SIGKILL")
            for pid in set(left + self._ns_pids()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            t = time.monotonic() + 5
            while time.monotonic() < t and ([p for p in self.pids if proc_alive(p)]
                                            or self._ns_pids()):
                time.sleep(0.05)
        self.pids = []
        self.mntns = None

    def stop(self):
        if self in _servers:
            _servers.remove(self)
        self._stop_processes()
        self._cleanup_dir()

    def print_log_tail(self, lines=30):
        super().print_log_tail(lines)
        keep, self.log_path = self.log_path, os.path.join(self.dir, "authdaemond.log")
        try:
            super().print_log_tail(10)
        finally:
            self.log_path = keep

    def imap(self, user, password, tls="none", authzid=None, timeout=30):
        if tls != "none":
            raise ValueError("the Courier harness has no TLS")
        return super().imap(user, password, tls, authzid, timeout)

    def url(self, user, scheme="imap", query="?tls=none"):
        return f"{scheme}://{user}@{self.host}:{self.port}{query}"

# --------------------------------------------------------------------------
# Corpus


class Postgres(_Server):
    """A throwaway PostgreSQL on 127.0.0.1 (the shared state of several
    imapferry machines), as tests/support/pgtmp.sh does for the unit tests.

    initdb refuses root: as root the server runs as "postgres". The user
    "imapferry" logs in with a password (scram-sha-256), which clients take
    from PGPASSWORD (env()), never from the URL. restart() stops the server
    (immediate: like a crash) and starts it again on the same port.
    """

    kind = "postgres"
    USER = "imapferry"
    PASSWORD = "pg-throwaway-7Qe"

    def __init__(self, name="pg"):
        self.name = name
        self.dir = short_tempdir(name)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = None
        self.bindir = None
        self.user = None

    @staticmethod
    def find_bindir():
        import glob
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))
        for d in reversed(dirs):
            if os.path.exists(os.path.join(d, "initdb")):
                return d
        return None

    def _as_owner(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def env(self, extra=None):
        e = dict(os.environ)
        e["PGPASSWORD"] = self.PASSWORD
        e.update(extra or {})
        return e

    def start(self, timeout=60):
        self.bindir = self.find_bindir()
        if self.bindir is None:
            skip("PostgreSQL is not installed (scripts/install-deps.sh)")
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout):
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.PASSWORD + "\n")
        os.chmod(pwfile, 0o644)
        subprocess.run(self._as_owner([
            os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.USER,
            f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
            "-E", "SQL_ASCII", "--locale=C"]), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.unlink(pwfile)
        self.port = free_ports(1)[0]
        self._pg_ctl_start(timeout)
        _servers.append(self)
        return self

    def _pg_ctl_start(self, timeout):
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                "-c fsync=off -c synchronous_commit=off -c max_connections=300")
        p = subprocess.run(self._as_owner([
            os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log_path,
            "-w", "-t", str(timeout), "-o", opts, "start"]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            self.print_log_tail()
            raise RuntimeError(f"pg_ctl start failed: {p.stdout}")

    def stop_server(self, mode="immediate"):
        if self.bindir and os.path.isdir(self.data):
            subprocess.run(self._as_owner([
                os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", mode,
                "-w", "stop"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def restart(self, down_seconds=0.0):
        """Stops the server at once (as a crash would) and starts it again."""
        self.stop_server("immediate")
        time.sleep(down_seconds)
        self._pg_ctl_start(60)

    def stop(self):
        if self in _servers:
            _servers.remove(self)
        self.stop_server()
        self._cleanup_dir()

    def url(self, db="postgres"):
        return f"postgresql://{self.USER}@{self.host}:{self.port}/{db}"

    def psql(self, db, sql):
        """Runs sql; returns the rows as lists of strings."""
        p = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                            "-p", str(self.port), "-U", self.USER, "-d", db, "-c", sql],
                           env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {p.stderr}")
        return [ln.split("\t") for ln in p.stdout.splitlines() if ln]

    def createdb(self, db):
        self.psql("postgres", f'CREATE DATABASE "{db}"')
        return self.url(db)


def corpus_gen_path():
    p = os.environ.get("IMAPFERRY_CORPUS_GEN")
    if p:
        return p
    return os.path.join(os.path.dirname(os.path.abspath(SRC)), "shared", "corpus", "gen.py")


class Corpus(list):
    """Manifest rows (dicts) of a generated corpus; .root is its directory.
    Each row gets "abs_path" added."""

    root = None

    def users(self):
        return sorted({r["user"] for r in self})

    def user_dir(self, user):
        return os.path.join(self.root, user)


def _cache_root():
    d = os.environ.get("IMAPFERRY_CACHE") or os.path.join(tempfile.gettempdir(),
                                                          "imapferry-test-cache")
    os.makedirs(d, exist_ok=True)
    return d


def gen_corpus(outdir=None, users=2, messages=150, seed=3, maildir=True):
    """Run shared/corpus/gen.py (cached per gen.py version, users, messages,
    seed and format) and return its manifest as a Corpus.

    With outdir None the corpus is read in place from the cache (treat it as
    read-only); otherwise it is copied to outdir first.
    """
    gen = corpus_gen_path()
    if not os.path.exists(gen):
        skip(f"corpus generator not found: {gen} (set IMAPFERRY_CORPUS_GEN)")
    with open(gen, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    fmt = "maildir" if maildir else "eml"
    cached = os.path.join(_cache_root(), f"corpus-{digest}-u{users}-m{messages}-s{seed}-{fmt}")
    if not os.path.exists(os.path.join(cached, "manifest.jsonl")):
        tmp = tempfile.mkdtemp(prefix="gen-", dir=_cache_root())
        cmd = [sys.executable, gen, "--out", tmp, "--users", str(users),
               "--messages", str(messages), "--seed", str(seed)]
        if maildir:
            cmd.append("--maildir")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        try:
            os.rename(tmp, cached)          # atomic: parallel tests may race here
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    root = cached
    if outdir is not None:
        shutil.copytree(cached, outdir, dirs_exist_ok=True)
        root = outdir
    rows = Corpus()
    rows.root = root
    with open(os.path.join(root, "manifest.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            r["abs_path"] = os.path.join(root, r["path"])
            rows.append(r)
    return rows


def rfc822_size(path):
    """RFC822.SIZE as Dovecot (and Cyrus) report it: bare LFs count as CRLF."""
    with open(path, "rb") as f:
        data = f.read()
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def imap_folder_name(folder, separator="/", prefix=""):
    """gen.py folder name ("Archive/2019") -> IMAP name (UTF-8) on a server
    with this personal namespace."""
    if folder == "INBOX":
        return "INBOX"
    return prefix + folder.replace("/", separator)


def expected_folders(rows, user, separator="/", prefix=""):
    """{imap name (UTF-8): {"messages": n, "size": bytes}} from the manifest
    and the files, for folders that hold messages."""
    out = {}
    for r in rows:
        if r["user"] != user:
            continue
        e = out.setdefault(imap_folder_name(r["folder"], separator, prefix),
                           {"messages": 0, "size": 0})
        e["messages"] += 1
        e["size"] += rfc822_size(r["abs_path"])
    return out


def append_rows(conn, rows, user, separator="/", prefix=""):
    """APPEND a user's manifest rows through imaplib (flags, keywords,
    INTERNALDATE), creating folders as needed. For servers that cannot be
    filled on disk (Cyrus). Returns the number of messages appended."""
    made, n = {"INBOX"}, 0
    for r in rows:
        if r["user"] != user:
            continue
        name = mutf7_encode(imap_folder_name(r["folder"], separator, prefix))
        if name not in made:
            typ, data = conn.create(_quote(name))
            if typ != "OK" and b"exist" not in b" ".join(data).lower():
                raise RuntimeError(f"CREATE {name}: {data}")
            made.add(name)
        with open(r["abs_path"], "rb") as f:
            body = f.read()
        flags = "(" + " ".join(r["flags"] + r["keywords"]) + ")"
        typ, data = conn.append(_quote(name), flags, r["internaldate"], body)
        if typ != "OK":
            raise RuntimeError(f"APPEND {r['path']} to {name}: {data}")
        n += 1
    return n


# --------------------------------------------------------------------------
# imaplib oracle

_TOKEN = re.compile(rb'\s*(\((?P<list>[^)]*)\)|"(?P<q>(?:[^"\\]|\\.)*)"|(?P<atom>[^\s()"]+))')


def _list_tokens(line):
    toks, pos = [], 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if not m:
            break
        pos = m.end()
        if m.group("list") is not None:
            toks.append(m.group("list").split())
        elif m.group("q") is not None:
            toks.append(re.sub(rb"\\(.)", rb"\1", m.group("q")))
        else:
            toks.append(m.group("atom"))
    return toks


def parse_list_response(data):
    """imaplib LIST data -> [(attributes [str], delimiter str|None, raw name str)]."""
    out = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):       # name sent as a literal
            head, name = item[0], item[1]
            toks = _list_tokens(head)
            attrs, delim = toks[0], toks[1]
        else:
            toks = _list_tokens(item)
            attrs, delim, name = toks[0], toks[1], toks[2]
        delim = None if delim == b"NIL" else delim.decode()
        out.append(([a.decode() for a in attrs], delim, name.decode("utf-8", "replace")))
    return out


def _quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def oracle_folders(conn, with_size=True):
    """Ask a server through imaplib: {UTF-8 name: {"raw_name", "attributes",
    "selectable", "messages", "size"}}. Sizes are summed RFC822.SIZE from
    FETCH over EXAMINE (read-only)."""
    typ, data = conn.list('""', "*")
    if typ != "OK":
        raise RuntimeError(f"LIST: {data}")
    out = {}
    for attrs, delim, raw in parse_list_response(data):
        low = [a.lower() for a in attrs]
        sel = "\\noselect" not in low and "\\nonexistent" not in low
        e = {"raw_name": raw, "attributes": attrs, "selectable": sel,
             "messages": 0, "size": 0, "delimiter": delim}
        if sel:
            typ, st = conn.status(_quote(raw), "(MESSAGES)")
            if typ != "OK":
                raise RuntimeError(f"STATUS {raw}: {st}")
            e["messages"] = int(re.search(rb"MESSAGES (\d+)", st[0]).group(1))
            if with_size and e["messages"]:
                typ, _ = conn.select(_quote(raw), readonly=True)
                if typ != "OK":
                    raise RuntimeError(f"EXAMINE {raw}")
                typ, fd = conn.fetch("1:*", "(RFC822.SIZE)")
                e["size"] = sum(int(m.group(1)) for x in fd if isinstance(x, bytes)
                                for m in [re.search(rb"RFC822\.SIZE (\d+)", x)] if m)
                conn.close()
        out[mutf7_decode(raw)] = e
    return out


# --------------------------------------------------------------------------
# Running the binary under test

def have_ferry():
    return os.access(BIN, os.X_OK)


def run_ferry(args, env=None, input=None, timeout=300, password=None, check=False):
    """Run $IMAPFERRY_BIN with args; returns CompletedProcess with str
    stdout/stderr (UTF-8, invalid bytes replaced).

    The inherited IMAPFERRY_PASSWORD is removed unless password= is given;
    env= entries are added on top (a value of None removes the variable).
    stdin is /dev/null unless input= is given, so nothing can wait on a tty.
    Skips the test if the binary does not exist.
    """
    if not have_ferry():
        skip(f"imapferry binary not built: {BIN}")
    e = dict(os.environ)
    e.pop("IMAPFERRY_PASSWORD", None)
    if password is not None:
        e["IMAPFERRY_PASSWORD"] = password
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    if input is None:
        kw = {"stdin": subprocess.DEVNULL}
    else:
        kw = {"input": input.encode() if isinstance(input, str) else input}
    p = subprocess.run([BIN, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, **kw)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise AssertionError(f"imapferry {' '.join(args)} exited {p.returncode}\n"
                             f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def describe(p):
    """A CompletedProcess as text, for assertion messages."""
    return (f"exit {p.returncode}: {' '.join(map(str, p.args))}\n--- stdout\n{p.stdout}"
            f"\n--- stderr\n{p.stderr}")


if __name__ == "__main__":
    # Self-check: python3 tests/integ/harness.py
    with Dovecot("selftest") as d:
        c = d.imap("alice", "alicepw", tls="starttls")
        print(d.greeting, c.capabilities)
        c.logout()
