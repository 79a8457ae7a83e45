"""Encrypted access tokens (issue 18, item 3; docs/tokens.md): with
--jwt-encrypt-key the real sessiond wraps every signed access token in a
compact JWE (ECDH-ES+A256KW, A256GCM) for one recipient.

Two independent parties open them: panva/jose from npm
(tests/jwt/decrypt.mjs: compactDecrypt with the recipient's private key,
then jwtVerify of the nested JWT against the server's JWKS URL), and
libsessiond-client (sd_client_jwt_verify with decrypt_key_file, through
examples/client/jwt_verify.c as in test_jwt_verify.py). Bad JWEs are built
here with the `cryptography` package (its ECDH, Concat KDF, AES key wrap
and AES-GCM), so each differs from a good one in one respect only."""
import base64
import json
import os
import signal
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from conftest import new_user, wait_for
from test_jwt import AUDIENCE, ISSUER, REPO, keygen, verify, write_keys
from test_jwt_verify import REASON, SESSIONCTL, claims, driver_exe, sign  # noqa: F401 (a fixture)

DECRYPTER = REPO / "tests" / "jwt" / "decrypt.mjs"
REASON = dict(REASON, encryption="access token: not encrypted for this verifier's key, or altered (JWE)")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64(t):
    return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))


def len32(b):
    return len(b).to_bytes(4, "big") + b


class Recipient:
    """A P-256 key pair of the tokens' recipient, written as sessiond takes
    the public half (a '<kid> <base64 DER>' line, or PEM) and as jose and
    the C library take the private half (PKCS#8 PEM)."""

    def __init__(self, tmp_path, name, kid=None, pem=False, key=None):
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.private_file = tmp_path / f"{name}.pem"
        self.private_file.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.public_file = tmp_path / f"{name}.pub"
        self.write_public(self.public_file, kid, pem)

    def write_public(self, path, kid, pem=False):
        pub = self.key.public_key()
        if pem:
            path.write_bytes(pub.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
        else:
            der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            path.write_text(f"# the recipient of our access tokens\n{kid} {base64.b64encode(der).decode()}\n")


def make_jwe(pub, plaintext, alg="ECDH-ES+A256KW", enc="A256GCM", apu=b"", apv=b"", epk=None, **extra):
    """A compact JWE of plaintext for the public key pub, built as RFC 7518
    section 4.6 says (header members alg/enc/epk may be overridden)."""
    eph = ec.generate_private_key(ec.SECP256R1())
    z = eph.exchange(ec.ECDH(), pub)
    info = len32(b"ECDH-ES+A256KW") + len32(apu) + len32(apv) + (256).to_bytes(4, "big")
    kek = ConcatKDFHash(hashes.SHA256(), 32, info).derive(z)
    cek = os.urandom(32)
    n = eph.public_key().public_numbers()
    h = {"alg": alg, "enc": enc, "cty": "JWT",
         "epk": epk or {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")),
                        "y": b64(n.y.to_bytes(32, "big"))}}
    if apu:
        h["apu"] = b64(apu)
    if apv:
        h["apv"] = b64(apv)
    h.update(extra)
    hb = b64(json.dumps(h).encode())
    iv = os.urandom(12)
    ct = AESGCM(cek).encrypt(iv, plaintext.encode(), hb.encode())
    return ".".join([hb, b64(aes_key_wrap(kek, cek)), b64(iv), b64(ct[:-16]), b64(ct[-16:])])


def decrypt(srv, recipient, *tokens):
    """Each token through jose: compactDecrypt, then jwtVerify on the JWKS."""
    r = subprocess.run(["node", str(DECRYPTER), str(recipient.private_file),
                        srv.direct_url + "/.well-known/jwks.json", ISSUER, AUDIENCE],
                       input="".join(t + "\n" for t in tokens), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(out) == len(tokens), r.stdout + r.stderr
    return out


@pytest.fixture
def signing_keys(tmp_path):
    f = tmp_path / "jwt-keys"
    ed = keygen("EdDSA", "ed-1")
    write_keys(f, ed)
    return f, serialization.load_der_private_key(base64.b64decode(ed.split()[1]), None)


@pytest.fixture
def recipient(tmp_path):
    return Recipient(tmp_path, "rcpt", kid="rcpt-1")


@pytest.fixture
def srv(make_server, signing_keys, recipient):
    return make_server("--jwt-keys", signing_keys[0], "--jwt-encrypt-key", recipient.public_file,
                       "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)


def via_token_route(api, token):
    r = api.post("/sessions/token", headers={"Authorization": f"Bearer {token}"}, expect=200).json()
    return r["accessToken"]


# ---- sessiond encrypts, jose decrypts ------------------------------------------


def test_every_route_mints_a_jwe_that_jose_decrypts_and_verifies(srv, recipient):
    user = new_user()
    s = srv.api.create(user)
    bearer = {"Authorization": f"Bearer {s['token']}"}
    minted = [via_token_route(srv.api, s["token"]),
              srv.api.post("/sessions/validate", params={"accessToken": "true"}, headers=bearer,
                           expect=200).json()["accessToken"]]
    r = srv.api.post(f"/sessions/{s['sessionId']}/refresh", params={"accessToken": "true"}, headers=bearer,
                     expect=200).json()
    minted.append(r["accessToken"])
    for t in minted:
        parts = t.split(".")
        assert len(parts) == 5 and all(parts), t[:60]
        # Nothing of the claims is readable without the key.
        assert user not in "".join(unb64(p).decode("latin-1") for p in parts)
    out = decrypt(srv, recipient, *minted)
    for o in out:
        assert o["ok"], o
        assert o["jwe"]["alg"] == "ECDH-ES+A256KW" and o["jwe"]["enc"] == "A256GCM"
        assert o["jwe"]["cty"] == "JWT" and o["jwe"]["kid"] == "rcpt-1"
        assert set(o["jwe"]["epk"]) == {"kty", "crv", "x", "y"}  # public only
        assert o["header"] == {"alg": "EdDSA", "kid": "ed-1", "typ": "at+jwt"}
        assert o["payload"]["sub"] == user and o["payload"]["iss"] == ISSUER
    assert {o["payload"]["sid"] for o in out} == {s["sessionId"]}
    # A fresh ephemeral key and content key for every token minted; the
    # validation was handed the token route's JWE again (--jwt-reuse), the
    # refresh (a new version of the session) got a new one.
    assert minted[0] == minted[1] != minted[2]
    assert len({json.dumps(o["jwe"]["epk"]) for o in out}) == 2
    # jose's plain JWS verifier cannot take it: the token is not a JWS.
    assert not verify(srv, minted[0])[0]["ok"]


def test_another_recipients_key_cannot_decrypt(srv, tmp_path):
    s = srv.api.create(new_user())
    other = Recipient(tmp_path, "other", kid="rcpt-1")
    out = decrypt(srv, other, via_token_route(srv.api, s["token"]))[0]
    assert not out["ok"] and out["stage"] == "decrypt", out


def test_a_pem_public_key_works_without_a_kid(make_server, signing_keys, tmp_path):
    rc = Recipient(tmp_path, "pem", pem=True)
    srv = make_server("--jwt-keys", signing_keys[0], "--jwt-encrypt-key", rc.public_file,
                      "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    s = srv.api.create(new_user())
    out = decrypt(srv, rc, via_token_route(srv.api, s["token"]))[0]
    assert out["ok"] and "kid" not in out["jwe"], out


def test_sighup_switches_to_a_new_recipient_key(srv, recipient, tmp_path):
    s = srv.api.create(new_user())
    old = via_token_route(srv.api, s["token"])
    new = Recipient(tmp_path, "rcpt2", kid="rcpt-2")
    new.write_public(recipient.public_file, "rcpt-2")
    os.kill(srv.pid, signal.SIGHUP)

    def kid():
        t = via_token_route(srv.api, s["token"])
        return json.loads(unb64(t.split(".")[0])).get("kid")

    wait_for(lambda: kid() == "rcpt-2", timeout=60, what="tokens for the new recipient key")
    fresh = via_token_route(srv.api, s["token"])
    assert decrypt(srv, new, fresh)[0]["ok"]
    assert decrypt(srv, recipient, old)[0]["ok"]  # tokens already out stay the old key's
    assert not decrypt(srv, recipient, fresh)[0]["ok"]
    # A broken file on SIGHUP keeps the keys in use.
    recipient.public_file.write_text("rcpt-3 not-a-key\n")
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: "keeping the current JWT keys" in srv.log_text(), timeout=60,
             what="the reload to be refused")
    assert decrypt(srv, new, via_token_route(srv.api, s["token"]))[0]["ok"]


def _refused_at_start(make_server, *args):
    srv = make_server(*args, start=False)
    return subprocess.run(srv.command(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_unusable_recipient_keys_stop_the_start(make_server, signing_keys, recipient, tmp_path):
    bad = tmp_path / "bad"
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    cases = {
        # sessiond must never hold the recipient's secret
        "private key": recipient.private_file.read_text(),
        "P-384": "k " + base64.b64encode(p384.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode() + "\n",
        "Ed25519": ed.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "two keys": recipient.public_file.read_text() + recipient.public_file.read_text().replace("rcpt-1", "r2"),
        "bad kid": recipient.public_file.read_text().replace("rcpt-1", "rc/pt"),
        "empty": "# nothing\n",
        "garbage": "rcpt-1 bm90IGEga2V5\n",
    }
    for what, text in cases.items():
        bad.write_text(text)
        r = _refused_at_start(make_server, "--jwt-keys", signing_keys[0], "--jwt-encrypt-key", bad)
        assert r.returncode == 2 and str(bad) in r.stderr, (what, r.stderr)
        assert "PRIVATE" not in r.stderr and "BEGIN" not in r.stderr, (what, r.stderr)
    r = _refused_at_start(make_server, "--jwt-keys", signing_keys[0], "--jwt-encrypt-key", tmp_path / "missing")
    assert r.returncode == 2 and "missing" in r.stderr
    r = _refused_at_start(make_server, "--jwt-encrypt-key", recipient.public_file)
    assert r.returncode == 2 and "jwt-encrypt-key needs jwt-keys" in r.stderr


# ---- libsessiond-client decrypts and verifies -----------------------------------


class Verifier:
    """examples/client/jwt_verify.c with the recipient's private key (or
    none): one token a line in, one answer a line out."""

    def __init__(self, exe, url, key_file=None):
        env = dict(os.environ)
        env.pop("SESSIOND_JWT_DECRYPT_KEY", None)
        if key_file:
            env["SESSIOND_JWT_DECRYPT_KEY"] = str(key_file)
        self.p = subprocess.Popen([str(exe), url, ISSUER, AUDIENCE], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        assert out, "the verifier ended"
        word, _, rest = out.rpartition(" polls=")[0].partition(" ")
        return word, rest

    def close(self):
        self.p.stdin.close()
        assert self.p.wait(timeout=60) == 0


def test_the_client_library_decrypts_and_refuses_every_bad_jwe(srv, recipient, signing_keys, driver_exe,
                                                                tmp_path):
    s = srv.api.create(new_user())
    sid = s["sessionId"]
    good = via_token_route(srv.api, s["token"])
    pub = recipient.key.public_key()
    ed_key = signing_keys[1]
    ed = {"alg": "EdDSA", "kid": "ed-1", "typ": "at+jwt"}
    jws = sign(ed_key, ed, claims(sid))
    h, k, iv, ct, tag = good.split(".")

    def flip(part):  # change the first character: the first 6 bits of the part
        return ("A" if part[0] != "A" else "B") + part[1:]

    other = Recipient(tmp_path, "other").key.public_key()
    jh, jp, jsig = jws.split(".")
    forged = f"{jh}.{b64(json.dumps(dict(claims(sid), sub='mallory')).encode())}.{jsig}"
    off_curve = {"kty": "EC", "crv": "P-256", "x": b64((1).to_bytes(32, "big")), "y": b64((1).to_bytes(32, "big"))}
    cases = [
        ("ok", good),
        ("ok", make_jwe(pub, jws)),  # built by another implementation
        ("ok", make_jwe(pub, jws, apu=b"sessiond", apv=b"orders-api")),  # party info in the KDF
        ("encryption", jws),  # merely signed: this verifier takes encrypted tokens only
        ("malformed", ".".join([h, k, iv, ct])),  # truncated: four parts
        ("malformed", good + ".x"),  # six parts
        ("malformed", ".".join([h, k, iv, ct, tag[:10]])),  # truncated tag
        ("encryption", ".".join([h, k, iv, ct[:-8], tag])),  # truncated ciphertext
        ("encryption", ".".join([h, k, iv, ct, flip(tag)])),  # tampered tag
        ("encryption", ".".join([h, k, iv, flip(ct), tag])),  # tampered ciphertext
        ("encryption", ".".join([h, flip(k), iv, ct, tag])),  # tampered wrapped key
        ("encryption", ".".join([h, k, flip(iv), ct, tag])),  # tampered IV
        # tampered header: the same epk, one member more (the AAD differs)
        ("encryption", ".".join([b64(json.dumps(dict(json.loads(unb64(h)), x="y")).encode()), k, iv, ct, tag])),
        ("encryption", make_jwe(other, jws)),  # for another recipient
        ("alg", make_jwe(pub, jws, alg="ECDH-ES")),  # direct key agreement
        ("alg", make_jwe(pub, jws, alg="ECDH-ES+A128KW")),
        ("alg", make_jwe(pub, jws, alg="RSA-OAEP-256")),
        ("alg", make_jwe(pub, jws, alg="dir")),
        ("alg", make_jwe(pub, jws, enc="A128GCM")),
        ("alg", make_jwe(pub, jws, enc="A256CBC-HS512")),
        ("malformed", make_jwe(pub, jws, epk=off_curve)),  # invalid curve: refused at import
        ("malformed", make_jwe(pub, jws, epk={"kty": "EC", "crv": "P-384", "x": off_curve["x"], "y": off_curve["y"]})),
        ("malformed", make_jwe(pub, jws, zip="DEF")),
        ("malformed", make_jwe(pub, jws, crit=["exp"])),
        ("malformed", make_jwe(pub, jws, cty="text/plain")),
        # what is inside is verified as any signed token is
        ("signature", make_jwe(pub, forged)),
        ("expired", make_jwe(pub, sign(ed_key, ed, claims(sid, iat=1000, nbf=1000, exp=2000)))),
        ("aud", make_jwe(pub, sign(ed_key, ed, claims(sid, aud="billing-api")))),
        ("malformed", make_jwe(pub, "not a jwt")),
    ]
    v = Verifier(driver_exe, srv.url, recipient.private_file)
    try:
        for want, tok in cases:
            word, why = v.ask(tok)
            if want == "ok":
                assert word == "ok" and f"sid={sid}" in why, (tok, word, why)
            else:
                assert (word, why) == ("refused", REASON[want]), (want, tok, word, why)
    finally:
        v.close()
    # A verifier without a decryption key takes no JWE.
    v = Verifier(driver_exe, srv.url)
    try:
        assert v.ask(good) == ("refused", REASON["encryption"])
        assert v.ask(jws)[0] == "ok"
    finally:
        v.close()
    assert good not in srv.log_text()


def test_sessionctl_jwt_verify_decrypts(srv, recipient, tmp_path):
    s = srv.api.create(new_user())
    tok = via_token_route(srv.api, s["token"])

    def ctl(*args):
        return subprocess.run([SESSIONCTL, "--url", srv.url, "--json", "jwt", "verify", "--issuer", ISSUER,
                               "--audience", AUDIENCE, *args], input=tok, capture_output=True, text=True,
                              timeout=120)

    p = ctl("--decrypt-key", str(recipient.private_file))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["valid"] and out["sid"] == s["sessionId"] and out["kid"] == "ed-1"
    p = ctl()
    assert p.returncode == 6 and REASON["encryption"] in p.stderr
    p = ctl("--decrypt-key", str(recipient.public_file))  # not a private key
    assert p.returncode not in (0, 6), p.stderr
    assert tok not in p.stderr


def test_a_pinned_key_set_is_never_refetched(make_server, signing_keys, driver_exe, tmp_path):
    """jwks_json: the verifier trusts the set it was given, and a kid the
    server publishes later stays unknown to it (while one that fetches
    finds it at once)."""
    srv = make_server("--jwt-keys", signing_keys[0], "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE)
    pinned = srv.api.get("/.well-known/jwks.json").json()
    s = srv.api.create(new_user())
    first = via_token_route(srv.api, s["token"])
    write_keys(signing_keys[0], signing_keys[0].read_text(), keygen("ES256", "es-2"))
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: json.loads(unb64(via_token_route(srv.api, s["token"]).split(".")[0]))["kid"] == "es-2",
             timeout=60, what="es-2 to sign")
    second = via_token_route(srv.api, s["token"])
    env = dict(os.environ, SESSIOND_JWKS=json.dumps(pinned))
    env.pop("SESSIOND_JWT_DECRYPT_KEY", None)
    p = subprocess.run([str(driver_exe), srv.url, ISSUER, AUDIENCE], input=f"{first}\n{second}\n",
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    a, b = p.stdout.splitlines()
    assert a.startswith("ok ") and b.startswith("refused " + REASON["kid"]), p.stdout
    v = Verifier(driver_exe, srv.url)
    try:
        assert v.ask(second)[0] == "ok"
    finally:
        v.close()
