"""A scripted fake IMAP server for hostile cases (Python 3 standard library only).

It listens on 127.0.0.1 (port chosen by the kernel) in a background thread and
plays a script against each client connection, recording everything the
client sends. Use it for what a real server will not do: malformed responses,
huge literal sizes, BYE in the middle of a pipeline, responses split at every
byte, hostile folder names, connections that stall or close.

A script is a list of steps. A step is a tuple

    (expect, send)  or  (expect, send, options)

expect   None: send at once. Otherwise a regex (str or bytes) that must match
         (re.search) the next line the client sends (CRLF stripped). A client
         literal is not read by itself: answer "+ go\\r\\n" in this step and
         give the next step the option "literal" (or use it right away with
         LITERAL+).
send     bytes (or str, encoded UTF-8) to send after the match, or a callable
         f(match, conn) -> bytes. "{tag}" in bytes is replaced by the tag (first
         word) of the client's last line, so b"{tag} OK done\\r\\n" answers any
         tag. Use b"" to send nothing.
options  dict:
         split_every_byte  True: send one byte per write (TCP_NODELAY, with
                           "byte_delay" seconds between bytes, default 0.001)
         chunk             N: send in writes of N bytes
         delay             seconds to sleep before sending
         close             True: close the connection after sending
         shutdown_write    True: half-close (FIN) after sending, keep reading
         reset             True: close with RST (SO_LINGER 0) after sending
         literal           N: after the matched line, read N raw bytes (the
                           client's literal) and the rest of that command line
         timeout           seconds to wait for the expected line (default 10)
         starttls          True: after sending, wrap the socket in TLS (needs
                           tls_context=); the rest of the script runs over TLS
         no_tag            True: do not substitute "{tag}"

When the script ends without "close", the server keeps reading (and
recording) until the client closes or `linger` seconds pass (default 30).

    from fakeserver import FakeServer, GREETING
    script = [(None, GREETING),
              (rb"^(\\S+) LOGIN ", b"{tag} OK logged in\\r\\n"),
              (rb"^(\\S+) LIST ", b'* LIST () "/" {4294967296}\\r\\n', {"close": True})]
    with FakeServer(script) as fs:
        run_ferry(["ls", f"imap://u@127.0.0.1:{fs.port}?tls=none"], password="x")
        fs.wait()
        assert not fs.errors
        print(fs.received())          # all bytes the client sent

scripts: one script for every connection, or a list of scripts used for
successive connections (the last one repeats).
"""

import re
import socket
import ssl
import struct
import threading
import time

GREETING = (b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN SASL-IR] "
            b"fakeserver ready\r\n")


def greet_and_login(capabilities=b"IMAP4rev1 LITERAL+ AUTH=PLAIN SASL-IR"):
    """Steps for a greeting plus an accepted LOGIN or AUTHENTICATE PLAIN."""
    return [(None, b"* OK [CAPABILITY " + capabilities + b"] fakeserver ready\r\n"),
            (rb"^\S+ (LOGIN|AUTHENTICATE) ",
             b"{tag} OK [CAPABILITY " + capabilities + b"] logged in\r\n")]


class ScriptError(Exception):
    pass


class _Conn:
    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        self.buf = b""
        self.received = bytearray()     # everything the client sent
        self.sent = bytearray()         # everything we sent
        self.last_tag = b"*"
        self.closed = False

    def read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScriptError(f"timeout waiting for a line; have {bytes(self.buf)!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ScriptError(f"client closed; pending {bytes(self.buf)!r}")
            self.received += chunk
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read_exact(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ScriptError(f"timeout reading a {n}-byte literal")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ScriptError("client closed inside a literal")
            self.received += chunk
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, data, opts):
        if opts.get("split_every_byte"):
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pause = opts.get("byte_delay", 0.001)
            for i in range(len(data)):
                self.sock.sendall(data[i:i + 1])
                if pause:
                    time.sleep(pause)
        elif opts.get("chunk"):
            n = opts["chunk"]
            for i in range(0, len(data), n):
                self.sock.sendall(data[i:i + n])
        else:
            self.sock.sendall(data)
        self.sent += data


class FakeServer:
    def __init__(self, scripts, tls_context=None, implicit_tls=False, linger=30.0,
                 host="127.0.0.1"):
        if scripts and isinstance(scripts[0], tuple):
            scripts = [scripts]
        self.scripts = [list(s) for s in scripts]
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.linger = linger
        self.conns = []          # _Conn, in accept order
        self.errors = []         # (connection index, message)
        self.transcript = []     # (connection index, "C"|"S"|"event", bytes|str)
        self._lock = threading.Lock()
        self._threads = []
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    # -- lifecycle
    def start(self):
        self._acceptor.start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.sock.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def wait(self, timeout=30, connections=1):
        """Wait until `connections` connections were accepted and their scripts
        (and linger) have ended. Returns True if they all did in time."""
        deadline = time.monotonic() + timeout
        while len(self._threads) < connections:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        for t in list(self._threads):
            t.join(timeout=max(0, deadline - time.monotonic()))
            if t.is_alive():
                return False
        return True

    # -- results
    def received(self, index=None):
        """Bytes the client sent on connection index (default: all, joined)."""
        if index is not None:
            return bytes(self.conns[index].received)
        return b"".join(bytes(c.received) for c in self.conns)

    def client_lines(self, index=0):
        return bytes(self.conns[index].received).split(b"\r\n")

    # -- internals
    def _accept_loop(self):
        index = 0
        while not self._stop.is_set():
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            script = self.scripts[min(index, len(self.scripts) - 1)]
            c = _Conn(s, index)
            with self._lock:
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c, script), daemon=True)
            self._threads.append(t)
            t.start()
            index += 1

    def _event(self, c, kind, data):
        with self._lock:
            self.transcript.append((c.index, kind, data))

    def _serve(self, c, script):
        try:
            if self.implicit_tls:
                c.sock = self.tls_context.wrap_socket(c.sock, server_side=True)
            for step in script:
                expect, send = step[0], step[1]
                opts = step[2] if len(step) > 2 else {}
                m = None
                if expect is not None:
                    line = c.read_line(opts.get("timeout", 10))
                    self._event(c, "C", line)
                    words = line.split(b" ", 1)
                    if words and words[0]:
                        c.last_tag = words[0]
                    pat = expect.encode() if isinstance(expect, str) else expect
                    m = re.search(pat, line)
                    if not m:
                        raise ScriptError(f"expected {pat!r}, client sent {line!r}")
                    if opts.get("literal"):
                        lit = c.read_exact(opts["literal"], opts.get("timeout", 10))
                        rest = c.read_line(opts.get("timeout", 10))
                        self._event(c, "C", lit + b"\r\n" + rest)
                if callable(send):
                    send = send(m, c)
                if isinstance(send, str):
                    send = send.encode()
                if send and not opts.get("no_tag"):
                    send = send.replace(b"{tag}", c.last_tag)
                if opts.get("delay"):
                    time.sleep(opts["delay"])
                if send:
                    self._event(c, "S", send)
                    c.send(send, opts)
                if opts.get("starttls"):
                    c.sock = self.tls_context.wrap_socket(c.sock, server_side=True)
                if opts.get("reset"):
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
                    c.sock.close()
                    c.closed = True
                    self._event(c, "event", "reset")
                    return
                if opts.get("close"):
                    c.sock.close()
                    c.closed = True
                    self._event(c, "event", "close")
                    return
                if opts.get("shutdown_write"):
                    c.sock.shutdown(socket.SHUT_WR)
                    self._event(c, "event", "shutdown_write")
            self._drain(c)
        except ScriptError as e:
            self.errors.append((c.index, str(e)))
            self._event(c, "event", f"error: {e}")
        except (OSError, ssl.SSLError) as e:
            self.errors.append((c.index, f"{type(e).__name__}: {e}"))
            self._event(c, "event", f"error: {e}")
        finally:
            if not c.closed:
                try:
                    c.sock.close()
                except OSError:
                    pass
                c.closed = True

    def _drain(self, c):
        """Script done: record whatever else the client sends until it closes."""
        deadline = time.monotonic() + self.linger
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                self._event(c, "event", "linger timeout")
                return
            c.sock.settimeout(min(left, 0.5))
            try:
                chunk = c.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                self._event(c, "event", "client closed")
                return
            c.received += chunk
            self._event(c, "C", chunk)


if __name__ == "__main__":
    # Self-check against imaplib.
    import imaplib
    login = greet_and_login()
    script = [login[0],
              (rb"^\S+ CAPABILITY", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n"),
              login[1],
              (rb"^\S+ LIST ", b'* LIST (\\HasNoChildren) "/" "Evil \\"quoted\\""\r\n'
                         b'* LIST () "/" {5}\r\nab\r\nc\r\n{tag} OK done\r\n',
         {"split_every_byte": True}),
        (rb"^\S+ LOGOUT", b"* BYE bye\r\n{tag} OK bye\r\n", {"close": True}),
    ]
    with FakeServer(script) as fs:
        c = imaplib.IMAP4("127.0.0.1", fs.port)
        c.login("u", "p")
        print(c.list())
        c.logout()
        assert fs.wait(5), "script did not finish"
        assert not fs.errors, fs.errors
        print(fs.received())
        print("fakeserver self-check ok")
