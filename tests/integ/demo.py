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
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

USERS = {f"user{i}": f"demo-pw-{i}" for i in (1, 2, 3)}
# Kept after the demo (the work directory is removed): beside the binary's
# build directory, e.g. build/demo-report.html.
BUILD_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(H.BIN)),
                                          "..", ".."))
REPORT = os.path.join(BUILD_DIR, "demo-report.html")
METRICS = os.path.join(BUILD_DIR, "demo-metrics.prom")
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


def steps(src, dst, cut, workdir):
    """What the demo shows, in order: one line per step."""
    ca = {"SSL_CERT_FILE": src.cert_path}   # trust the throwaway self-signed cert
    users_csv = os.path.join(workdir, "users.csv")
    with open(users_csv, "w") as f:
        f.write("src_user,dst_user\n" + "".join(f"{u},{u}\n" for u in USERS))
    master_pw = os.path.join(workdir, "master.pw")
    with open(master_pw, "w") as f:
        f.write(MASTER[1] + "\n")
    state = os.path.join(workdir, "state.db")
    srct = f"imap://%u*{MASTER[0]}@127.0.0.1:{src.port}"
    dstt = f"imap://%u*{MASTER[0]}@127.0.0.1:{dst.port}"
    both = ["--src-password-file", master_pw, "--dst-password-file", master_pw]
    pw1 = {"IMAPFERRY_SRC_PASSWORD": USERS["user1"]}
    return [
        lambda: ferry("the source account of user1 (STARTTLS, certificate verified)",
                      ["ls", src.url("user1")], USERS["user1"], ca),
        lambda: ferry("plan the whole server: inventory, measured costs, schedule",
                      ["plan", "--workers", "3", *both, users_csv, srct, dstt], env=ca),
        lambda: ferry("run it: 3 workers, resumable, every account (Dovecot master user), "
                      "Prometheus metrics for node_exporter",
                      ["run", "--workers", "3", "--progress", "plain", "--state", state,
                       "--metrics", METRICS, *both, users_csv, srct, dstt], env=ca),
        lambda: ferry("status of the run, from the state database",
                      ["status", "--state", state]),
        lambda: ferry("prove it: verify user1, every message's SHA-256",
                      ["verify", "--deep", "--state", state, *both,
                       src.url("user1*" + MASTER[0]), dst.url("user1*" + MASTER[0])], env=ca),
        lambda: ferry("run again: incremental, nothing left to copy",
                      ["run", "--workers", "3", "--progress", "plain", "--state", state,
                       *both, users_csv, srct, dstt], env=ca),
        lambda: ferry("transparent cutover: user1 straight into a Dovecot Maildir, "
                      "keeping UIDVALIDITY, UIDNEXT and every UID",
                      ["copy", "--owner", "mail:mail", "--state",
                       os.path.join(workdir, "cutover.db"), src.url("user1"),
                       "maildir:" + cut.maildir("user1")], env={**ca, **pw1}),
        lambda: ferry("the source INBOX ...", ["ls", src.url("user1")], USERS["user1"], ca),
        lambda: ferry("... and the new server: same UIDVALIDITY and UIDNEXT per folder",
                      ["ls", cut.url("user1", query="?tls=none")], USERS["user1"]),
        lambda: ferry("what administrators look at: the first run as one HTML page",
                      ["report", "--state", state, "--run", "1", "--html", REPORT]),
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
            H.Dovecot("demo-dst", users=USERS, master=MASTER) as dst, \
            H.Dovecot("demo-cut", users=USERS, master=MASTER) as cut:
        for u in USERS:
            src.load_maildir(u, corpus.user_dir(u))
        print(f"demo: source Dovecot on 127.0.0.1:{src.port} (imaps {src.tls_port}), "
              f"target on 127.0.0.1:{dst.port} (imaps {dst.tls_port})")
        workdir = tempfile.mkdtemp(prefix="imapferry-demo-")
        try:
            for step in steps(src, dst, cut, workdir):
                step()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if hold:
            print("\nservers are up; try for example:")
            print(f"  export IMAPFERRY_PASSWORD={USERS['user2']} SSL_CERT_FILE={src.cert_path}")
            print(f"  {H.BIN} ls {src.url('user2')}")
            print(f"users {USERS}, master {MASTER[0]}/{MASTER[1]}; target: "
                  f"{dst.url('user1')}; Maildir cutover target: {cut.url('user1')}")
            try:
                input("press Enter to stop the servers ")
            except EOFError:
                pass
    print("\ndemo: servers stopped")
    print(f"demo: the HTML report of the run: {REPORT}")
    print(f"demo: its Prometheus metrics: {METRICS}")


if __name__ == "__main__":
    main()
