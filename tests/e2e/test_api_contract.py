"""The API contract with third-party tools (tools/api, installed by make):
docs/openapi.yaml passes `redocly lint` (tools/api/redocly.yaml), and Prism,
the validating proxy of the SESSIOND_VIA_PRISM pass, really checks bodies in
both directions, so that pass cannot be green because Prism looked at nothing
(an unsupported `jsonSchemaDialect`, for one, made it skip every body)."""

import json
import subprocess

import pytest
import requests

from conftest import HTTP_TIMEOUT, REPO, VIA_PRISM, PrismProxy, new_user, record_token

TOOLS = REPO / "tools" / "api"
REDOCLY = TOOLS / "node_modules" / ".bin" / "redocly"
SPEC = REPO / "docs" / "openapi.yaml"

yaml = pytest.importorskip("yaml", reason="python3-yaml is not installed (scripts/install-deps.sh test)")

needs_prism_pass = pytest.mark.skipif(not VIA_PRISM, reason="runs in the Prism pass (make e2e-prism)")


def test_redocly_lint_accepts_the_spec():
    assert REDOCLY.exists(), f"{REDOCLY} not found: `make test` installs it (npm ci in tools/api)"
    r = subprocess.run([str(REDOCLY), "lint", "--config", str(TOOLS / "redocly.yaml"), str(SPEC)],
                       capture_output=True, text=True, timeout=120, cwd=TOOLS, stdin=subprocess.DEVNULL,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(TOOLS), "CI": "true",
                            "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"})
    out = r.stdout + r.stderr
    # redocly.yaml extends recommended-strict: any finding is an error.
    assert r.returncode == 0, f"redocly lint failed:\n{out[-6000:]}"


def violations(resp):
    raw = resp.headers.get("sl-violations")
    return json.loads(raw) if raw else []


@needs_prism_pass
def test_prism_checks_request_bodies(server):
    # server.api goes through Prism here; this raw requests call does not
    # apply the harness's own violation check, so the test can read it.
    bad = requests.post(server.url + "/sessions", json={"userId": 5}, timeout=HTTP_TIMEOUT)
    assert bad.status_code == 400
    assert any(v["location"][:2] == ["request", "body"] for v in violations(bad)), \
        f"Prism did not flag a body that departs from the spec: {bad.headers}"
    good = requests.post(server.url + "/sessions", json={"userId": new_user()}, timeout=HTTP_TIMEOUT)
    assert good.status_code == 201, good.text
    record_token(good.json()["token"])
    assert not violations(good), good.headers.get("sl-violations")


@needs_prism_pass
def test_prism_checks_response_bodies(server, tmp_path):
    """The deliberate departure, kept as a test: against a copy of the spec
    that says `version` is a string, every session response departs."""
    spec = yaml.safe_load(SPEC.read_text())
    spec["components"]["schemas"]["SessionFields"]["properties"]["version"]["type"] = "string"
    wrong = tmp_path / "openapi-wrong.yaml"
    wrong.write_text(yaml.safe_dump(spec, sort_keys=False))
    proxy = PrismProxy(tmp_path, server.port, spec=wrong).start()
    try:
        r = requests.post(proxy.url + "/sessions", json={"userId": new_user()}, timeout=HTTP_TIMEOUT)
        assert r.status_code == 201, r.text
        record_token(r.json()["token"])
        assert any(v["location"] == ["response", "body", "version"] for v in violations(r)), \
            f"Prism did not flag a response that departs from the spec: {r.headers}"
        assert proxy.response_violations(), "Prism did not log the response departure"
    finally:
        proxy.stop()
