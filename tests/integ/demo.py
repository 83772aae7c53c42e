#!/usr/bin/env python3
"""The demo behind scripts/demo.sh.

Starts two throwaway Dovecot instances on 127.0.0.1 through harness.py (the
same code the integration tests use): a source filled from
`gen.py --users 3 --messages 200 --seed 7 --maildir` and an empty target. Runs
the STEPS below against them, then stops both servers.

  --hold   after the steps, print the servers' URLs and passwords and wait
           for Enter, so you can try imapferry (or any IMAP client) by hand.
"""

import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

USERS = {f"user{i}": f"demo-pw-{i}" for i in (1, 2, 3)}
MASTER = ("master", "demo-master-pw")


def ferry(title, args, password=None, env=None):
    """Show and run one imapferry command; its output goes to the terminal.
    password goes to $IMAPFERRY_PASSWORD; env adds variables (values of
    *PASSWORD* variables are not shown)."""
    env = dict(env or {})
    if password is not None:
        env["IMAPFERRY_PASSWORD"] = password
    shown = " ".join(f"{k}=..." if "PASSWORD" in k else f"{k}={shlex.quote(v)}"
                     for k, v in env.items())
    print(f"\n### {title}")
    print(f"$ {shown} imapferry {' '.join(shlex.quote(a) for a in args)}", flush=True)
    rc = subprocess.run([H.BIN, *args], env=dict(os.environ, **env),
                        stdin=subprocess.DEVNULL).returncode
    if rc != 0:
        raise SystemExit(f"demo: imapferry exited with status {rc}")


def note(text):
    print(f"\n### {text}", flush=True)


def steps(src, dst):
    """What the demo shows, in order: one line per step."""
    ca = {"SSL_CERT_FILE": src.cert_path}   # trust the throwaway self-signed cert
    pw1 = {"IMAPFERRY_SRC_PASSWORD": USERS["user1"], "IMAPFERRY_DST_PASSWORD": USERS["user1"]}
    return [
        lambda: ferry("the source account of user1 (STARTTLS, certificate verified)",
                      ["ls", src.url("user1")], USERS["user1"], ca),
        lambda: ferry("user3 through the Dovecot master user (implicit TLS, not verified)",
                      ["ls", "--insecure", src.url("user3*master", scheme="imaps")], MASTER[1]),
        lambda: ferry("the empty target account of user1",
                      ["ls", dst.url("user1", query="?tls=none")], USERS["user1"]),
        lambda: note("copy (source -> target) will be shown here once it exists"),
        # lambda: ferry("copy user1", ["copy", src.url("user1"), dst.url("user1")], env={**ca, **pw1}),
    ]


def main():
    hold = "--hold" in sys.argv[1:]
    if not H.have_ferry():
        sys.exit(f"demo: {H.BIN} does not exist: build first "
                 "(cmake --preset default && cmake --build build)")
    if os.geteuid() != 0:
        sys.exit("demo: run as root (the throwaway Dovecot servers need it)")
    print("demo: generating the corpus (gen.py --users 3 --messages 200 --seed 7 --maildir)")
    corpus = H.gen_corpus(users=3, messages=200, seed=7)
    size = sum(os.path.getsize(r["abs_path"]) for r in corpus)
    print(f"demo: {len(corpus)} messages, {size / 1e6:.1f} MB, users {', '.join(USERS)}")
    with H.Dovecot("demo-src", users=USERS, master=MASTER,
                   special_use={"Sent": "\\Sent", "Drafts": "\\Drafts",
                                "Trash": "\\Trash"}) as src, \
            H.Dovecot("demo-dst", users=USERS, master=MASTER) as dst:
        for u in USERS:
            src.load_maildir(u, corpus.user_dir(u))
        print(f"demo: source Dovecot on 127.0.0.1:{src.port} (imaps {src.tls_port}), "
              f"target on 127.0.0.1:{dst.port} (imaps {dst.tls_port})")
        for step in steps(src, dst):
            step()
        if hold:
            print("\nservers are up; try for example:")
            print(f"  export IMAPFERRY_PASSWORD={USERS['user2']} SSL_CERT_FILE={src.cert_path}")
            print(f"  {H.BIN} ls {src.url('user2')}")
            print(f"users {USERS}, master {MASTER[0]}/{MASTER[1]}; target: "
                  f"{dst.url('user1')}")
            try:
                input("press Enter to stop the servers ")
            except EOFError:
                pass
    print("\ndemo: servers stopped")


if __name__ == "__main__":
    main()
