#!/usr/bin/env python3
"""imapferry ls URL against a throwaway Dovecot filled from gen.py.

Expected values come from the corpus manifest and files (message counts,
RFC822.SIZE = file size + bare LFs) and from imaplib (folder list and
attributes), never from imapferry.
"""

import contextlib
import base64
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

PW = {"user1": "pw1-Xq7rT2kW", "user2": "pw2-Lm4kP9sD"}
MASTER = ("master", "mpw-Zr8wN3cF")
WRONG = "wrong-Vb6yH1qA"
SECRETS = list(PW.values()) + [MASTER[1], WRONG]
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Archive": "\\Archive"}

LIST_FORM_DEPENDENT = {"\\haschildren", "\\hasnochildren", "\\marked", "\\unmarked"}

S = None            # the Dovecot
CORPUS = None       # manifest rows
ORACLE = {}         # user -> oracle_folders() via imaplib


@contextlib.contextmanager
def setup():
    global S, CORPUS
    CORPUS = H.gen_corpus(users=2, messages=150, seed=3)
    with H.Dovecot("ls", users=PW, master=MASTER, special_use=SPECIAL) as S:
        for u in PW:
            S.load_maildir(u, CORPUS.user_dir(u))
        for u in PW:
            c = S.imap(u, PW[u])
            ORACLE[u] = H.oracle_folders(c)
            c.logout()
        yield


# -- helpers

def secret_forms(secret):
    """The password as it could leak: raw, and inside a base64 PLAIN token."""
    forms = [secret]
    for user in list(PW) + [MASTER[0], ""]:
        for authz in ("", "user1", "user2"):
            tok = f"{authz}\0{user}\0{secret}".encode()
            forms.append(base64.b64encode(tok).decode())
    return forms


def ferry(args, password=None, env=None, expect_ok=True):
    p = H.run_ferry(args, password=password, env=env)
    out = p.stdout + p.stderr
    for s in SECRETS:
        for form in secret_forms(s):
            assert form not in out, f"a password leaked into the output\n{H.describe(p)}"
    if expect_ok:
        assert p.returncode == 0, H.describe(p)
    else:
        assert p.returncode != 0, "expected failure\n" + H.describe(p)
        assert p.stderr.strip(), "no error message on stderr\n" + H.describe(p)
    return p


def ls_json(url, *opts, password=None, env=None):
    p = ferry(["ls", "--json", *opts, url], password=password, env=env)
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"ls --json output is not JSON: {e}\n{H.describe(p)}")


def check_listing(j, user, tls, port):
    srv = j["server"]
    assert srv["host"] == "127.0.0.1", srv
    assert srv["port"] == port, (srv["port"], port)
    assert srv["tls"] == tls, (srv["tls"], tls)
    if tls != "none":
        assert "TLS" in srv["tls_info"], srv["tls_info"]
    assert isinstance(srv["greeting"], str) and srv["greeting"], srv
    assert "IMAP4REV1" in [c.upper() for c in srv["capabilities"]], srv["capabilities"]

    assert j["namespaces"]["personal"] == [{"prefix": "", "separator": "/"}], j["namespaces"]
    assert j["namespaces"]["other"] == [] and j["namespaces"]["shared"] == [], j["namespaces"]
    assert j["separator"] == "/", j["separator"]

    expected = H.expected_folders(CORPUS, user)
    oracle = ORACLE[user]
    folders = {f["name"]: f for f in j["folders"]}
    assert len(folders) == len(j["folders"]), "duplicate folder names"
    assert set(folders) == set(oracle), \
        f"folders differ from imaplib LIST: extra {set(folders) - set(oracle)}, " \
        f"missing {set(oracle) - set(folders)}"
    assert set(expected) <= set(folders), f"missing {set(expected) - set(folders)}"
    for name, f in folders.items():
        o = oracle[name]
        where = f"folder {name!r}: {f}"
        assert f["raw_name"] == o["raw_name"], where
        assert H.mutf7_decode(f["raw_name"]) == name, where
        # Child and \Marked information depends on the LIST form the client
        # sends (RETURN (CHILDREN) etc.); the rest must be what LIST says.
        attrs = {a.lower() for a in f["attributes"]}
        if "\\nonexistent" in attrs:      # RFC 5258: \NonExistent implies \Noselect
            attrs.add("\\noselect")
        want = {a.lower() for a in o["attributes"]} - LIST_FORM_DEPENDENT
        assert want <= attrs, (where, o["attributes"])
        assert f["selectable"] is o["selectable"], where
        assert f["special_use"] == SPECIAL.get(name), where
        if not f["selectable"]:
            assert f["messages"] == 0 and f["size"] == 0 and f["size_source"] is None, where
            continue
        e = expected.get(name, {"messages": 0, "size": 0})
        assert f["messages"] == e["messages"], (where, e)
        assert f["size"] == e["size"], (where, e)
        if e["messages"]:
            assert f["size_source"] in ("status", "fetch"), where
        else:
            assert f["size_source"] in ("status", "fetch", None), where
    t = j["totals"]
    assert t["folders"] == len(j["folders"]), t
    assert t["messages"] == sum(e["messages"] for e in expected.values()), t
    assert t["size"] == sum(e["size"] for e in expected.values()), t


# -- tests

def test_oracle_matches_manifest():
    """The harness itself: imaplib sees the corpus as the manifest says."""
    for u in PW:
        exp = H.expected_folders(CORPUS, u)
        for name, e in exp.items():
            o = ORACLE[u][name]
            assert (o["messages"], o["size"]) == (e["messages"], e["size"]), (u, name, o, e)
        for name, o in ORACLE[u].items():
            if name not in exp:
                assert o["messages"] == 0, (u, name, o)
    assert ORACLE["user1"]["Listes/ünïcode"]["raw_name"] == "Listes/&APw-n&AO8-code"
    assert not ORACLE["user1"]["Projects"]["selectable"]


def test_a_plain():
    j = ls_json(S.url("user1", query="?tls=none"), password=PW["user1"])
    check_listing(j, "user1", "none", S.port)


def test_b_starttls_insecure():
    j = ls_json(S.url("user1"), "--insecure", password=PW["user1"])
    check_listing(j, "user1", "starttls", S.port)


def test_c_imaps_insecure():
    j = ls_json(S.url("user1", scheme="imaps"), "--insecure", password=PW["user1"])
    check_listing(j, "user1", "implicit", S.tls_port)


def test_d_master_user_login():
    j = ls_json(S.url(f"user2*{MASTER[0]}", query="?tls=none"), password=MASTER[1])
    check_listing(j, "user2", "none", S.port)


def test_e_authzid():
    j = ls_json(S.url(MASTER[0], query="?tls=none"), "--authzid", "user2", password=MASTER[1])
    check_listing(j, "user2", "none", S.port)


def test_e_auth_plain_in_url():
    j = ls_json(S.url("user1;AUTH=PLAIN", query="?tls=none"), password=PW["user1"])
    check_listing(j, "user1", "none", S.port)


def test_f_self_signed_refused():
    env = {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None}
    for url in (S.url("user1", scheme="imaps"), S.url("user1")):
        p = ferry(["ls", "--json", url], password=PW["user1"], env=env, expect_ok=False)
        assert "certificate" in p.stderr.lower(), H.describe(p)
        assert p.stdout.strip() == "", H.describe(p)


def test_f_ca_via_ssl_cert_file():
    env = {"SSL_CERT_FILE": S.cert_path}
    j = ls_json(S.url("user1", scheme="imaps"), password=PW["user1"], env=env)
    check_listing(j, "user1", "implicit", S.tls_port)
    j = ls_json(S.url("user1"), password=PW["user1"], env=env)
    check_listing(j, "user1", "starttls", S.port)


def test_f_ca_file_option():
    env = {"SSL_CERT_FILE": None}
    j = ls_json(S.url("user1", scheme="imaps"), "--ca-file", S.cert_path,
                password=PW["user1"], env=env)
    check_listing(j, "user1", "implicit", S.tls_port)


def test_f_tls_min():
    j = ls_json(S.url("user1", scheme="imaps"), "--insecure", "--tls-min", "1.2",
                password=PW["user1"])
    assert j["server"]["tls"] == "implicit"


def test_starttls_require_without_starttls_fails():
    with H.Dovecot("nossl", users={"user1": PW["user1"]}, ssl=False) as plain:
        p = ferry(["ls", plain.url("user1", query="?starttls=require")],
                  password=PW["user1"], expect_ok=False)
        assert "starttls" in p.stderr.lower() or "tls" in p.stderr.lower(), H.describe(p)
        # Issue 12: without an option too (TLS is required by default);
        # only ?tls=none uses a server that offers no STARTTLS in the clear.
        p = ferry(["ls", plain.url("user1")], password=PW["user1"], expect_ok=False)
        assert "does not offer STARTTLS" in p.stderr, H.describe(p)
        j = ls_json(plain.url("user1", query="?tls=none"), password=PW["user1"])
        assert j["server"]["tls"] == "none", j["server"]


def test_g_wrong_password():
    for opts in ([], ["--json"]):
        p = ferry(["ls", *opts, S.url("user1", query="?tls=none")], password=WRONG,
                  expect_ok=False)
        assert p.stdout.strip() == "", H.describe(p)
    # Wrong master password and a master login for someone who is not a user.
    ferry(["ls", S.url("user1*master", query="?tls=none")], password=WRONG, expect_ok=False)
    ferry(["ls", "--authzid", "nosuchuser", S.url("master", query="?tls=none")],
          password=MASTER[1], expect_ok=False)


def test_g_no_password():
    p = ferry(["ls", S.url("user1", query="?tls=none")], expect_ok=False)
    assert "password" in p.stderr.lower(), H.describe(p)


def test_g_password_in_url_refused():
    url = f"imap://user1:{PW['user1']}@127.0.0.1:{S.port}?tls=none"
    p = H.run_ferry(["ls", url], password=PW["user1"])
    assert p.returncode != 0, H.describe(p)
    assert PW["user1"] not in p.stdout + p.stderr, "the URL's password was echoed\n" + H.describe(p)


def test_g_trace_never_shows_password():
    for args in (["--trace", S.url("user1", query="?tls=none")],
                 ["--trace", S.url("user1;AUTH=PLAIN", query="?tls=none")],
                 ["--trace", "--authzid", "user2", S.url("master", query="?tls=none")]):
        pw = MASTER[1] if "--authzid" in args else PW["user1"]
        ferry(["ls", *args], password=pw)   # ferry() checks every output for secrets


def test_h_human_output():
    p = ferry(["ls", S.url("user1", query="?tls=none")], password=PW["user1"])
    for name in ORACLE["user1"]:
        assert name in p.stdout, f"{name!r} missing\n{H.describe(p)}"
    exp = H.expected_folders(CORPUS, "user1")
    msgs = sum(e["messages"] for e in exp.values())
    size = sum(e["size"] for e in exp.values())
    for n in (msgs, size, len(ORACLE["user1"])):
        assert str(n) in p.stdout, f"total {n} missing\n{H.describe(p)}"


def test_i_password_file():
    with tempfile.NamedTemporaryFile("w", prefix="ife-pw-", delete=False) as f:
        f.write(PW["user2"] + "\n")
    try:
        os.chmod(f.name, 0o600)
        p = ferry(["ls", "--json", "--password-file", f.name,
                   S.url("user2", query="?tls=none")])
        check_listing(json.loads(p.stdout), "user2", "none", S.port)
    finally:
        os.unlink(f.name)


def test_bad_usage():
    for args in (["ls"], ["ls", "not-a-url"], ["ls", "http://user1@127.0.0.1/"],
                 ["ls", "--no-such-option", S.url("user1")]):
        ferry(args, password=PW["user1"], expect_ok=False)


if __name__ == "__main__":
    H.run_tests(setup=setup)
