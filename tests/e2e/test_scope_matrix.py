"""SECURITY.md item 28: the endpoint x scope matrix, generated from
docs/openapi.yaml. For every operation, the scope its security requirement
names is the one the server enforces: no key gets 401, a key with every
other scope gets 403, a key with that scope gets past authorization (any
status but 401/403), and public operations need no key at all. The same for
HTTP Basic client credentials (clientBasic) where the spec lists them, and
nowhere else."""
import hashlib
import secrets
from pathlib import Path

import pytest
import requests
import yaml

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SCOPES = ("validate", "sessions", "admin")
PARAMS = {"sessionId": "AAAAAAAAAAAAAAAAAAAAAA", "userId": "matrix-user", "asset": "app.js"}


def _operations(scheme="apiKey"):
    spec = yaml.safe_load(SPEC.read_text())
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "head"):
                continue
            reqs = op.get("security", spec.get("security", []))
            scopes = {s for req in reqs for s in req.get(scheme, [])}
            assert len(scopes) <= 1, f"{method} {path} names several scopes: {scopes}"
            yield method.upper(), path, (scopes.pop() if scopes else None), any(scheme in r for r in reqs)


OPS = [op[:3] for op in _operations()]
# Operations that also take HTTP Basic client credentials (the key's id, then
# the key): RFC 7662 introspection. Every other keyed operation must not.
BASIC_OPS = [op for op in _operations("clientBasic") if op[3]]
OTHER_KEYED = [op for op in OPS if op[2] and op[:2] not in {b[:2] for b in BASIC_OPS}]


@pytest.fixture(scope="module")
def keyed(make_server_module):
    keys = {s: secrets.token_urlsafe(32) for s in SCOPES}
    return keys, make_server_module(keys)


@pytest.fixture(scope="module")
def make_server_module(tmp_path_factory):
    from conftest import ServerFactory
    factory = ServerFactory(tmp_path_factory)

    def make(keys):
        d = tmp_path_factory.mktemp("keys")
        f = d / "keys"
        f.write_text("".join(f"k-{s} {hashlib.sha256(k.encode()).hexdigest()} {s}\n" for s, k in keys.items()))
        return factory("--api-keys", str(f))
    yield make
    factory.close_all()


def test_every_operation_names_a_known_scope_or_none():
    assert OPS, "no operations read from the spec"
    for method, path, scope in OPS:
        assert scope in (None, *SCOPES), f"{method} {path}: unknown scope {scope}"
    keyed_ops = [o for o in OPS if o[2]]
    assert len(keyed_ops) >= 15, keyed_ops


@pytest.mark.parametrize("method,path,scope", OPS, ids=[f"{m} {p}" for m, p, _ in OPS])
def test_scope_is_enforced_as_documented(keyed, method, path, scope):
    keys, srv = keyed
    url = path.format(**PARAMS)
    body = {"json": {}} if method in ("POST", "PUT") else {}

    def call(key):
        h = {"X-Api-Key": key} if key else {}
        r = requests.request(method, srv.url + url, headers=h, timeout=30, **body)
        # Authorization failures challenge for the key; /auth's own 401 (no
        # session token) challenges for a Bearer token instead.
        return r.status_code, "ApiKey" in r.headers.get("WWW-Authenticate", "")

    if scope is None:
        status, challenged = call(None)
        assert status != 403 and not challenged, f"{method} {path} is public in the spec"
        return
    assert call(None) == (401, True), f"{method} {path} without a key"
    for other in SCOPES:
        if other != scope:
            assert call(keys[other])[0] == 403, f"{method} {path} with a '{other}' key (needs '{scope}')"
    status, challenged = call(keys[scope])
    assert status != 403 and not challenged, f"{method} {path} with its own '{scope}' key: {status}"


def test_basic_client_credentials_where_documented():
    assert [(m, p) for m, p, _, _ in BASIC_OPS] == [("POST", "/introspect")], BASIC_OPS
    apikey = dict(((m, p), sc) for m, p, sc in OPS)
    for method, path, scope, _ in BASIC_OPS:
        assert scope == apikey[(method, path)], f"{method} {path}: clientBasic and apiKey name different scopes"


@pytest.mark.parametrize("method,path,scope,_", BASIC_OPS, ids=[f"{m} {p}" for m, p, _, _ in BASIC_OPS])
def test_basic_scope_is_enforced_as_documented(keyed, method, path, scope, _):
    keys, srv = keyed
    url = srv.url + path.format(**PARAMS)

    def call(auth):
        r = requests.request(method, url, auth=auth, data={"token": "A" * 43}, timeout=30)
        return r.status_code, r.headers.get("WWW-Authenticate", "")

    status, challenge = call(None)
    assert status == 401 and "Basic" in challenge and "ApiKey" in challenge, (status, challenge)
    for other in SCOPES:
        if other != scope:
            assert call((f"k-{other}", keys[other]))[0] == 403, f"{method} {path} with the '{other}' client"
    assert call((f"k-{scope}", "wrong"))[0] == 401
    assert call((f"k-{scope}", keys[scope]))[0] not in (401, 403), f"{method} {path} with its own client"


@pytest.mark.parametrize("method,path,scope", OTHER_KEYED, ids=[f"{m} {p}" for m, p, _ in OTHER_KEYED])
def test_basic_is_not_a_credential_elsewhere(keyed, method, path, scope):
    """Elsewhere Authorization carries session tokens: a key sent as Basic
    credentials does not authenticate the caller."""
    keys, srv = keyed
    body = {"json": {}} if method in ("POST", "PUT") else {}
    r = requests.request(method, srv.url + path.format(**PARAMS), auth=(f"k-{scope}", keys[scope]), timeout=30,
                         **body)
    assert r.status_code == 401 and "Basic" not in r.headers.get("WWW-Authenticate", ""), \
        f"{method} {path}: {r.status_code} {r.headers.get('WWW-Authenticate')}"
