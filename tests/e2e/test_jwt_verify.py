"""Offline verification of access tokens by libsessiond-client
(sd_client_jwt_verify) and `sessionctl jwt verify`, against the real
sessiond's JWK Set and revocation feed (issue 18, item 5).

examples/client/jwt_verify.c, compiled against the build tree's library,
is the long-lived verifier: one token a line on stdin, one answer a line
("ok ..." or "refused <reason>", then "polls=N"). Bad tokens are made here
with the `cryptography` package: signed with the server's own published
key (expired, not yet valid, wrong audience or issuer: only the claim is
wrong), or altered after signing (re-signed, truncated, algorithm swapped).
Nothing depends on timing: the revocation test waits for the verifier's
poll counter to move and then asserts what that poll did."""
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_private_key

from conftest import REPO, SESSIOND_BIN, new_user, wait_for

ISSUER = "https://sessiond.test"
AUDIENCE = "orders-api"
_beside = Path(SESSIOND_BIN).parent / "sessionctl"
SESSIONCTL = os.environ.get("SESSIONCTL_BIN") or str(_beside if _beside.exists() else REPO / "build" / "sessionctl")

REASON = {
    "malformed": "access token: not a well-formed signed JWT of sessiond's",
    "alg": "access token: algorithm not allowed, or not its key's",
    "kid": "access token: no published key has its kid",
    "signature": "access token: the signature does not verify",
    "expired": "access token: expired",
    "nbf": "access token: not valid yet (nbf or iat in the future)",
    "aud": "access token: not for this audience",
    "iss": "access token: from another issuer",
    "revoked": "access token: its session was revoked",
    "claims": "access token: a required claim is missing or malformed",
}


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def keyline(alg, kid):
    r = subprocess.run([SESSIOND_BIN, "jwk", "generate", "--alg", alg, "--kid", kid], capture_output=True,
                       text=True, check=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.stdout


def private_key(line):
    return load_der_private_key(base64.b64decode(line.split()[1]), None)


def sign(key, header, claims):
    h, p = b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())
    data = f"{h}.{p}".encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        sig = key.sign(data)
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{h}.{p}.{b64(sig)}"


@pytest.fixture(scope="module")
def driver_exe(tmp_path_factory):
    """The example, linked with the library's ASan objects when the suite
    runs the ASan build (so every bad token goes through the sanitizers),
    else with the release archive."""
    out = tmp_path_factory.mktemp("jwtverify") / "jwt_verify"
    libs = subprocess.run(["pkg-config", "--libs", "libcurl", "jansson", "libcrypto"], capture_output=True,
                          text=True, check=True).stdout.split()
    asan = "/asan/" in SESSIOND_BIN
    target = "build/asan/sessionctl" if asan else "build/libsessiond-client.a"
    subprocess.run(["make", "-s", target], cwd=REPO, check=True, timeout=600)
    lib = (sorted(map(str, (REPO / "build/asan/client").glob("*.o"))) + ["-fsanitize=address,undefined"]
           if asan else [str(REPO / "build/libsessiond-client.a")])
    subprocess.run(["cc", "-std=c17", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "client/include"),
                    str(REPO / "examples/client/jwt_verify.c"), *lib, *libs, "-o", str(out)],
                   check=True, timeout=300)
    return out


class Verifier:
    """The example as a long-lived verifier: one line in, one line out."""

    def __init__(self, exe, url, poll_ms=None, audience=AUDIENCE, env=None):
        args = [str(exe), url, ISSUER, audience] + ([str(poll_ms)] if poll_ms is not None else [])
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **(env or {})))

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        assert out, "the verifier ended"
        text, _, polls = out.rpartition(" polls=")
        word, _, head = text.partition(" ")
        return word, head, int(polls)

    def close(self):
        self.p.stdin.close()
        assert self.p.wait(timeout=60) == 0


@pytest.fixture
def keys(tmp_path):
    ed, es = keyline("ES256", "es-1"), keyline("EdDSA", "ed-1")  # the last line signs: ed-1
    f = tmp_path / "jwt-keys"
    f.write_text(ed + es)
    os.chmod(f, 0o600)
    return f, private_key(ed), private_key(es)


@pytest.fixture
def srv(make_server, keys):
    return make_server("--jwt-keys", keys[0], "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)


def access_token(api, token):
    r = api.post("/sessions/validate", params={"accessToken": "true"},
                 headers={"Authorization": f"Bearer {token}"}, expect=200).json()
    return r["accessToken"]


def claims(sid, **over):
    now = int(time.time())
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "sid": sid, "iat": now, "nbf": now,
         "exp": now + 300, "jti": "j" * 22}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_every_bad_token_is_refused_for_its_reason(srv, keys, driver_exe):
    _, es_key, ed_key = keys
    s = srv.api.create(new_user())
    good = access_token(srv.api, s["token"])
    h, p, sig = good.split(".")
    ed = {"alg": "EdDSA", "kid": "ed-1", "typ": "at+jwt"}
    es = {"alg": "ES256", "kid": "es-1", "typ": "at+jwt"}
    sid = s["sessionId"]
    forged_p = b64(json.dumps(dict(json.loads(base64.urlsafe_b64decode(p + "==")), sub="mallory")).encode())
    jwk_x = next(k for k in srv.api.get("/.well-known/jwks.json").json()["keys"] if k["kid"] == "ed-1")["x"]
    hs_h = b64(json.dumps({"alg": "HS256", "kid": "ed-1", "typ": "at+jwt"}).encode())
    hs_sig = b64(hmac.new(base64.urlsafe_b64decode(jwk_x + "="), f"{hs_h}.{p}".encode(), hashlib.sha256).digest())
    cases = [
        ("ok", good),
        ("ok", sign(es_key, es, claims(sid))),  # ES256: JOSE r||s to DER in the library
        ("malformed", "not-a-jwt"),
        ("malformed", f"{h}.{p}"),
        ("malformed", f"{h}.{p}.{sig}.{sig}"),
        ("malformed", f"{b64(b'[1]')}.{p}.{sig}"),
        ("malformed", f"{h}+.{p}.{sig}"),
        ("malformed", f"{h}.{p}."),  # truncated: no signature
        ("signature", f"{h}.{p}.{sig[:40]}"),  # truncated signature
        ("malformed", sign(ed_key, {"alg": "EdDSA", "kid": "ed-1"}, claims(sid))),  # no typ at+jwt
        ("signature", f"{h}.{forged_p}.{sig}"),  # re-signed: claims changed, signature kept
        ("signature", sign(ed25519.Ed25519PrivateKey.generate(), ed, claims(sid))),  # another key, same kid
        ("alg", f"{b64(json.dumps(dict(ed, alg='ES256')).encode())}.{p}.{sig}"),  # EdDSA key as ES256
        ("alg", f"{b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{p}."),
        ("alg", f"{hs_h}.{p}.{hs_sig}"),  # HS256 keyed with the public key
        ("kid", sign(ed_key, dict(ed, kid="ed-9"), claims(sid))),
        ("kid", sign(ed_key, {"alg": "EdDSA", "typ": "at+jwt"}, claims(sid))),
        ("expired", sign(ed_key, ed, claims(sid, iat=1000, nbf=1000, exp=2000))),
        ("nbf", sign(ed_key, ed, claims(sid, nbf=int(time.time()) + 3600))),
        ("nbf", sign(ed_key, ed, claims(sid, iat=int(time.time()) + 3600))),
        ("aud", sign(ed_key, ed, claims(sid, aud="billing-api"))),
        ("ok", sign(ed_key, ed, claims(sid, aud=["billing-api", AUDIENCE]))),
        ("aud", sign(ed_key, ed, claims(sid, aud=None))),
        ("iss", sign(ed_key, ed, claims(sid, iss="https://evil.test"))),
        ("claims", sign(ed_key, ed, claims(None))),
        ("claims", sign(ed_key, ed, claims(sid, exp=None))),
        ("claims", sign(ed_key, ed, claims(sid, exp="soon"))),
    ]
    v = Verifier(driver_exe, srv.url)
    try:
        for want, tok in cases:
            word, why, _ = v.ask(tok)
            if want == "ok":
                assert word == "ok" and f"sid={sid}" in why, (tok, word, why)
            else:
                assert (word, why) == ("refused", REASON[want]), (want, tok)
    finally:
        v.close()
    assert good not in srv.log_text()


def test_a_revocation_reaches_a_polling_verifier_at_its_next_poll(srv, driver_exe):
    """Issue 18's target (within the poll interval plus a second, with a
    1 s poll) as behaviour: every poll that starts after DELETE's answer
    refuses the token, and polls come at the interval (the test waits for
    the counter; the wait's deadline only guards against a hang)."""
    v = Verifier(driver_exe, srv.url, poll_ms=1000)
    try:
        s = srv.api.create(new_user())
        tok = access_token(srv.api, s["token"])
        word, _, polls = v.ask(tok)
        assert word == "ok" and polls == 1  # the first verification polled
        srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
        deadline = time.monotonic() + 120
        while True:
            word, why, now_polls = v.ask(tok)
            if now_polls > polls:
                break
            assert word == "ok"  # no poll since the DELETE: not known yet
            assert time.monotonic() < deadline, "the verifier never polled again"
            time.sleep(0.05)
        assert (word, why) == ("refused", REASON["revoked"])
        # An explicit poll does the same at once.
        s2 = srv.api.create(new_user())
        tok2 = access_token(srv.api, s2["token"])
        assert v.ask(tok2)[0] == "ok"
        srv.api.delete(f"/sessions/{s2['sessionId']}", expect=204)
        assert v.ask("poll")[0] == "polled"
        assert v.ask(tok2)[:2] == ("refused", REASON["revoked"])
        assert v.ask(tok)[:2] == ("refused", REASON["revoked"])
    finally:
        v.close()


def test_a_token_verified_again_comes_from_the_cache_and_is_still_checked(srv, driver_exe, clock):
    """The verifier keeps what it verified (sd_client_jwt_cache), by the
    hash of the token: the same token again costs no signature check, but
    exp and the revocation feed are checked on every call. Only the
    verifier's clock moves (the clock fixture's shim wraps its time())."""
    s = srv.api.create(new_user())
    tok = access_token(srv.api, s["token"])  # exp: now + 300
    v = Verifier(driver_exe, srv.url, poll_ms=-1, env=clock.env)
    try:
        assert [v.ask(tok)[0] for _ in range(3)] == ["ok"] * 3
        assert v.ask("cache")[1] == "hits=2 misses=1"
        clock.advance(300 + 30 + 1)  # exp plus the 30 s of skew: expired, cached or not
        assert v.ask(tok)[:2] == ("refused", REASON["expired"])
        clock.advance(-331)  # the clock back: the expired entry was dropped, verified afresh
        assert v.ask(tok)[0] == "ok" and v.ask("cache")[1] == "hits=3 misses=2"
        # a revocation reaches a cached token at the next poll
        srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
        assert v.ask(tok)[0] == "ok"  # not polled yet (poll -1: only when asked)
        assert v.ask("poll")[0] == "polled"
        assert v.ask(tok)[:2] == ("refused", REASON["revoked"])
        assert v.ask("cache")[1] == "hits=5 misses=2"
    finally:
        v.close()
    # turned off, every verification checks the signature
    s = srv.api.create(new_user())
    tok = access_token(srv.api, s["token"])
    v = Verifier(driver_exe, srv.url, poll_ms=-1, env={"SESSIOND_JWT_CACHE": "0"})
    try:
        assert [v.ask(tok)[0] for _ in range(3)] == ["ok"] * 3
        assert v.ask("cache")[1] == "hits=0 misses=0"
    finally:
        v.close()


def test_a_fetch_of_the_key_set_empties_the_cache(make_server, tmp_path, driver_exe):
    """A token of a key the set no longer has is refused once the verifier
    refetches the set, cached or not."""
    f = tmp_path / "jwt-keys"
    f.write_text(keyline("EdDSA", "k1"))
    os.chmod(f, 0o600)
    srv = make_server("--jwt-keys", f, "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    s = srv.api.create(new_user())
    tok = access_token(srv.api, s["token"])
    v = Verifier(driver_exe, srv.url, poll_ms=-1, env={"SESSIOND_JWKS_MAX_AGE": "1"})
    try:
        assert v.ask(tok)[0] == "ok" and v.ask(tok)[0] == "ok"
        assert v.ask("cache")[1] == "hits=1 misses=1"
        f.write_text(keyline("EdDSA", "k2"))  # k1 retired
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: [k["kid"] for k in srv.api.get("/.well-known/jwks.json").json()["keys"]] == ["k2"],
                 what="k1 to be retired")
        time.sleep(1.1)  # at least the verifier's max age (1 s): its next verification refetches
        assert v.ask(tok)[:2] == ("refused", REASON["kid"])
    finally:
        v.close()


def ctl(url, *args, stdin):
    return subprocess.run([SESSIONCTL, "--url", url, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_sessionctl_jwt_verify(srv, keys):
    _, _, ed_key = keys
    s = srv.api.create(new_user())
    tok = access_token(srv.api, s["token"])
    p = ctl(srv.url, "--json", "jwt", "verify", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=tok + "\n")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["valid"] and out["sid"] == s["sessionId"] and out["kid"] == "ed-1" and out["alg"] == "EdDSA"
    p = ctl(srv.url, "jwt", "verify", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=tok)
    assert p.returncode == 0 and s["sessionId"] in p.stdout and "ed-1" in p.stdout
    p = ctl(srv.url, "jwt", "verify", "--issuer", ISSUER, "--audience", "billing-api", stdin=tok)
    assert p.returncode == 6 and p.stderr == f"sessionctl: token refused: {REASON['aud']}\n"
    expired = sign(ed_key, {"alg": "EdDSA", "kid": "ed-1", "typ": "at+jwt"},
                   claims(s["sessionId"], iat=1000, nbf=1000, exp=2000))
    p = ctl(srv.url, "jwt", "verify", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=expired)
    assert p.returncode == 6 and REASON["expired"] in p.stderr and expired not in p.stderr
    srv.api.delete(f"/sessions/{s['sessionId']}", expect=204)
    p = ctl(srv.url, "jwt", "verify", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=tok)
    assert p.returncode == 6 and REASON["revoked"] in p.stderr
    assert ctl(srv.url, "jwt", "verify", "--issuer", ISSUER, stdin=tok).returncode == 2
    assert ctl(srv.url, "jwt", "verify", tok, "--issuer", ISSUER, "--audience", AUDIENCE, stdin="").returncode == 2
    assert ctl(srv.url, "jwt", "check", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=tok).returncode == 2
    # A server without the route: a transport-level failure, not a refusal.
    p = ctl("http://127.0.0.1:1", "jwt", "verify", "--issuer", ISSUER, "--audience", AUDIENCE, stdin=tok)
    assert p.returncode == 5, p.stderr
