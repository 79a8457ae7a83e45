"""docs/openapi.yaml against the server: the document parses as OpenAPI 3.1,
documents exactly the routes of src/api/routes.c, every documented operation
is routed by the running server, and the session schemas declare exactly the
properties the server returns."""

import re

import pytest
import requests

from conftest import HTTP_TIMEOUT, REPO, new_user, problem_detail

yaml = pytest.importorskip(
    "yaml", reason="python3-yaml is not installed (scripts/install-deps.sh test installs it)")

SPEC_PATH = REPO / "docs" / "openapi.yaml"
ROUTES_C = REPO / "src" / "api" / "routes.c"
METHODS = ("get", "put", "post", "delete", "head", "options", "patch", "trace")

# Valid-looking values for path parameters: routing is the point, not success.
PARAM_VALUES = {"sessionId": "AAAAAAAAAAAAAAAAAAAAAA", "userId": "openapi-routing-user",
                "asset": "app.js"}


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def routes():
    """(METHOD, pattern) pairs of the C route table."""
    text = ROUTES_C.read_text()
    table = re.search(r"sd_api_routes\[\]\s*=\s*\{(.*?)\};", text, re.S)
    assert table, f"no sd_api_routes table found in {ROUTES_C}"
    found = re.findall(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,', table.group(1))
    assert found, f"no routes parsed from {ROUTES_C}"
    return found


def documented_ops(spec):
    return [(m.upper(), path) for path, item in spec["paths"].items()
            for m in item if m in METHODS]


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"external $ref {ref!r} is not supported"
        cur = spec
        for part in ref[2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
    return node


def object_shape(spec, schema):
    """(declared property names, required names) of an object schema, following
    $ref and allOf."""
    schema = resolve(spec, schema)
    props = set(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for sub in schema.get("allOf", []):
        p, r = object_shape(spec, sub)
        props |= p
        required |= r
    return props, required


def response_schema(spec, path, method, status):
    op = spec["paths"][path][method]
    resp = resolve(spec, op["responses"][status])
    return resp["content"]["application/json"]["schema"]


def fill(path):
    return re.sub(r"\{(\w+)\}", lambda m: PARAM_VALUES[m.group(1)], path)


# ---------------------------------------------------------------- (a) ------
def test_document_is_openapi_31(spec):
    assert isinstance(spec, dict), "docs/openapi.yaml is not a YAML mapping"
    assert re.fullmatch(r"3\.1\.\d+", str(spec.get("openapi"))), \
        f"openapi is {spec.get('openapi')!r}, want 3.1.x"
    assert spec.get("info", {}).get("title") and spec["info"].get("version"), "info.title/version missing"
    assert isinstance(spec.get("paths"), dict) and spec["paths"], "no paths"


def test_every_ref_resolves(spec):
    bad = []

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                try:
                    resolve(spec, {"$ref": node["$ref"]})
                except (KeyError, TypeError):
                    bad.append(f"{where}: {node['$ref']}")
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(spec, "#")
    assert not bad, "unresolved $refs:\n" + "\n".join(bad)


# ---------------------------------------------------------------- (b) ------
def test_every_route_is_documented(spec, routes):
    missing = [f"{m} {p}" for m, p in routes
               if p not in spec["paths"] or m.lower() not in spec["paths"][p]]
    assert not missing, "routes of src/api/routes.c missing from docs/openapi.yaml: " + ", ".join(missing)


def test_get_routes_document_head(spec, routes):
    missing = [p for m, p in routes if m == "GET" and "head" not in spec["paths"].get(p, {})]
    assert not missing, "GET routes also answer HEAD, but the document has no head operation for: " + \
        ", ".join(missing)


def test_no_operation_without_a_route(spec, routes):
    served = set(routes) | {("HEAD", p) for m, p in routes if m == "GET"}
    extra = [f"{m} {p}" for m, p in documented_ops(spec) if (m, p) not in served]
    assert not extra, "documented operations the server does not route: " + ", ".join(extra)


# ---------------------------------------------------------------- (c) ------
def test_documented_operations_are_routed(server, spec, routes):
    served = set(routes) | {("HEAD", p) for m, p in routes if m == "GET"}
    checked = 0
    for method, path in documented_ops(spec):
        if (method, path) not in served:
            continue
        url_path = fill(path)
        if method == "HEAD":
            # No body to read a detail from: check the status, and on 404 ask
            # GET which 404 it is.
            r = requests.head(server.url + url_path, timeout=HTTP_TIMEOUT)
            assert r.content == b"", f"HEAD {url_path}: the response has a body"
            assert r.headers.get("X-Request-Id"), f"HEAD {url_path}: no X-Request-Id"
            assert r.status_code != 405, f"HEAD {url_path}: 405 (Allow: {r.headers.get('Allow')})"
            if r.status_code == 404:
                g = server.api.get(url_path)
                assert problem_detail(g) != "no such resource", f"HEAD {url_path}: not routed"
        else:
            kw = {"json": {}} if method in ("POST", "PUT") else {}
            r = server.api.request(method, url_path, **kw)
            assert r.status_code != 405, f"{method} {url_path}: 405 {r.text[:200]}"
            assert not (r.status_code == 404 and problem_detail(r) == "no such resource"), \
                f"{method} {url_path}: 404 no such resource"
        checked += 1
    assert checked >= len(routes), f"only {checked} operations checked for {len(routes)} routes"


# ---------------------------------------------------------------- (d) ------
FULL_CREATE = {
    "deviceId": "device-7f3a",
    "deviceInfo": "Pixel 9",
    "userAgent": "Mozilla/5.0",
    "ipAddress": "2001:DB8::1",
    "geoLocation": {"country": "FR"},
    "mfa": True,
    "data": {"tenant": "acme"},
    "ttlSeconds": 1800,
}


def test_created_session_matches_schema(server, spec):
    props, required = object_shape(spec, response_schema(spec, "/sessions", "post", "201"))
    assert "token" in props and "token" in required, "the create response schema must declare token"
    for body in ({"userId": new_user("oa")}, dict(FULL_CREATE, userId=new_user("oa"))):
        created = server.api.post("/sessions", json=body, expect=201).json()
        undeclared = set(created) - props
        assert not undeclared, f"POST /sessions returned properties the schema does not declare: {undeclared}"
        absent = required - set(created)
        assert not absent, f"POST /sessions lacks properties the schema requires: {absent}"
    assert set(FULL_CREATE) - {"ttlSeconds"} <= set(created), "the full create did not echo its attributes"


def test_session_view_matches_schema(server, spec):
    props, required = object_shape(spec, response_schema(spec, "/sessions/{sessionId}", "get", "200"))
    assert "token" not in props, "the session view must not declare token"
    created = server.api.post("/sessions", json=dict(FULL_CREATE, userId=new_user("oa")), expect=201).json()
    got = server.api.get(f"/sessions/{created['sessionId']}", expect=200).json()
    assert not set(got) - props, f"GET /sessions/{{id}} returned undeclared properties: {set(got) - props}"
    assert not required - set(got), f"GET /sessions/{{id}} lacks required properties: {required - set(got)}"


# Identifiers on both sides of the identifier rule (docs/security.md, "Identifiers").
IDENT_SAMPLES = ["alice", "Jean  Dupont", "x except=- count=999", "élise", "日本 語", "a\u00a0b",
                 "\U0001F600", "", " admin", "admin ", "   ", "\tadmin", "\u00a0admin", "admin\u3000",
                 "admin\ufeff", "\u1680x", "a\u0085b", "a\u0080", "a\u009fb", "a\u007f", "a\u2028b",
                 "a\u2029", "a\u001bb"]


def test_identifier_patterns_match_what_the_server_accepts(server, spec):
    """The create schema's pattern for userId (and the same for deviceId, acr
    and each amr entry) accepts exactly the ids the server accepts."""
    schemas = spec["components"]["schemas"]
    create = schemas["CreateSessionRequest"]["properties"]
    pattern = schemas["UserId"]["pattern"]
    assert create["deviceId"]["pattern"] == pattern and create["acr"]["pattern"] == pattern
    assert create["amr"]["items"]["pattern"] == pattern
    rule = re.compile(pattern)
    for uid in IDENT_SAMPLES:
        r = server.api.post("/sessions", json={"userId": uid})
        assert r.status_code in (201, 400), r.text
        spec_says = bool(rule.search(uid))
        assert (r.status_code == 201) == spec_says, \
            f"userId {uid!r}: the server answered {r.status_code}, the UserId pattern says " \
            f"{'valid' if spec_says else 'invalid'}"
