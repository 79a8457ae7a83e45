"""The operator console (/console/): how sessiond serves it, and the page
itself driven in Debian's headless Chromium by tests/browser/console-check.mjs
(playwright-core from npm; `make test` installs both). Screenshots of every
screen land in build/test-output/console/<build>/."""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess

import pytest
import requests

from conftest import HTTP_TIMEOUT, REPO, new_user, record_token

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = "/usr/bin/chromium"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "console.css": "text/css",
          "favicon.svg": "image/svg+xml"}

FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/119.0.6045.163 Mobile Safari/537.36")
EDGE_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61")
# Long, unbroken and unicode: must wrap, not widen the page.
LONG_UA = "SuperLongClient/" + "ä" * 40 + "-" + "x" * 300 + " (" + "🙂" * 30 + "; " + "y" * 400 + ")"


def _node_ready():
    return shutil.which("node") and (BROWSER_DIR / "node_modules" / "playwright-core").is_dir() \
        and os.access(CHROMIUM, os.X_OK)


def _key_line(key_id, key, scopes):
    return f"{key_id} {hashlib.sha256(key.encode()).hexdigest()} {scopes}\n"


def _out_dir():
    build = os.path.basename(os.path.dirname(os.environ.get("SESSIOND_BIN", "build/sessiond")))
    d = REPO / "build" / "test-output" / "console" / ("asan" if build == "asan" else "release")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_browser(tmp_path, config):
    assert _node_ready(), ("the browser tests need node, tests/browser/node_modules (make deps-browser "
                           f"runs npm ci there) and {CHROMIUM} (scripts/install-deps.sh test)")
    config = dict(config, resultPath=str(tmp_path / "result.json"))
    cfg_path = tmp_path / "console-config.json"
    cfg_path.write_text(json.dumps(config, ensure_ascii=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIOND_")}
    env["HOME"] = str(tmp_path)           # chromium's profile and crash dirs
    r = subprocess.run(["node", str(BROWSER_DIR / "console-check.mjs"), str(cfg_path)], cwd=BROWSER_DIR,
                       capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    result = json.loads((tmp_path / "result.json").read_text()) if (tmp_path / "result.json").exists() else {}
    assert r.returncode == 0, (f"the browser check failed (screenshots in {config['outDir']}):\n"
                               f"{r.stderr[-4000:]}\n{r.stdout[-2000:]}\nproblems: {result.get('problems')}")
    problems = result["problems"]
    assert not problems["pageErrors"], f"uncaught errors in the page: {problems['pageErrors']}"
    assert not problems["csp"] and not result.get("cspViolations"), \
        f"CSP violations: {problems['csp']} {result.get('cspViolations')}"
    assert not problems["console"], f"console errors: {problems['console']}"
    assert not problems["badResponses"], f"unexpected error responses: {problems['badResponses']}"
    return result


# ---------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------
def _page_html(api, page):
    """GET /<page> redirects to /<page>/, served as HTML with the strict CSP."""
    r = api.get(f"/{page}", expect=301)
    assert r.headers["Location"] == f"/{page}/"
    r = api.get(f"/{page}/", expect=200)
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Frame-Options"] == "DENY"
    return r.text


def test_console_is_served_with_a_strict_csp(server):
    api = server.api
    html = _page_html(api, "console")
    # Nothing inline that the CSP would block, nothing from elsewhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script> in index.html"
    assert "<style" not in html and " style=" not in html and "javascript:" not in html
    assert not re.search(r"\son[a-z]+=", html), "inline event handler in index.html"
    assert "http://" not in html and "https://" not in html
    for name, ctype in ASSETS.items():
        r = api.get(f"/console/{name}", expect=200)
        assert r.headers["Content-Type"].startswith(ctype), (name, r.headers["Content-Type"])
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.content == (REPO / "console" / name).read_bytes(), f"{name} differs from console/{name}"
    h = requests.head(server.url + "/console/app.js", timeout=HTTP_TIMEOUT)
    assert h.status_code == 200 and h.content == b""
    # Unknown files, other paths under /console: 404 problems, no listing.
    for path in ("/console/nope.js", "/console/..%2Fsessiond.db", "/console/index.html.bak",
                 "/console/a/b"):
        r = api.get(path, expect=404)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    api.post("/console/", json={}, expect=405)
    # Every script the page loads is a module of the console itself.
    for js in (REPO / "console").glob("*.js"):
        text = js.read_text()
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, js.name
        for imp in re.findall(r"from '([^']+)'", text):
            assert imp.startswith("./") and (REPO / "console" / imp[2:]).exists(), (js.name, imp)


def test_console_needs_no_key_for_its_files(make_server, tmp_path):
    key = secrets.token_urlsafe(32)
    keys = tmp_path / "keys"
    keys.write_text(_key_line("ops", key, "sessions,admin"))
    srv = make_server("--api-keys", str(keys))
    srv.api.get("/console/", expect=200)
    srv.api.get("/console/app.js", expect=200)
    # The data stays behind the key.
    srv.api.get(f"/users/{new_user()}/sessions", expect=401)


# ---------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------
def _seed(api, key, user, specs):
    ids = []
    for spec in specs:
        s = api.post("/sessions", json=dict(spec, userId=user), headers={"X-Api-Key": key}, expect=201).json()
        ids.append(s["sessionId"])
        for _ in range(3):  # validations feed the latency histogram
            api.post("/sessions/validate", headers={"X-Api-Key": key, "Authorization": f"Bearer {s['token']}"},
                     expect=200)
    return ids


def _histogram_quantile(q, buckets):
    """Prometheus' histogram_quantile over [(le, cumulative count)]."""
    buckets = sorted(buckets)
    n = buckets[-1][1]
    if n == 0:
        return None
    rank = q * n
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def _expected_overview(text):
    line_re = re.compile(r'^(\w+)(?:\{(.*)\})?\s+(\S+)$')
    active = requests_total = errors5 = 0.0
    val = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        assert m, f"unparsable metrics line {line!r}"
        name, labels_text, value = m.group(1), m.group(2) or "", float(m.group(3).replace("+Inf", "inf"))
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels_text))
        if name == "sessiond_sessions_active":
            active += value
        elif name == "sessiond_http_requests_total":
            requests_total += value
            if int(labels["status"]) >= 500:
                errors5 += value
        elif name == "sessiond_http_request_duration_seconds_bucket" and labels["route"] in (
                "/sessions/validate", "/sessions/{sessionId}/validate", "/auth", "/introspect"):
            le = float(labels["le"].replace("+Inf", "inf"))
            val[le] = val.get(le, 0) + value
    buckets = sorted(val.items())
    return {
        "ov-active": active,
        "ov-requests": requests_total,
        "ov-validations": buckets[-1][1] if buckets else 0,
        "ov-errors": errors5 / requests_total if requests_total else None,
        "ov-p50": _histogram_quantile(0.5, buckets),
        "ov-p95": _histogram_quantile(0.95, buckets),
        "ov-p99": _histogram_quantile(0.99, buckets),
    }


def test_console_in_chromium(make_server, tmp_path):
    key, wrong, narrow = (secrets.token_urlsafe(32) for _ in range(3))
    keys = tmp_path / "keys"
    keys.write_text(_key_line("ops", key, "sessions,admin,validate") + _key_line("support", narrow, "sessions"))
    srv = make_server("--api-keys", str(keys))
    api = srv.api

    user = new_user("console")
    ids = _seed(api, key, user, [
        {"userAgent": FIREFOX_WIN, "deviceInfo": "Work laptop", "deviceId": "dev-1", "ipAddress": "203.0.113.7",
         "geoLocation": {"country": "FR", "city": "Paris"}},
        {"userAgent": SAFARI_IPHONE, "deviceInfo": "iPhone", "ipAddress": "2001:db8::42", "mfa": True},
        {"userAgent": CHROME_ANDROID, "deviceInfo": "Pixel 8", "geoLocation": {"country": "DE"},
         "acr": "urn:example:loa:2", "amr": ["pwd", "otp"], "data": {"plan": "pro"}},
        {"userAgent": EDGE_MAC, "ipAddress": "198.51.100.23"},
    ])
    uni_user = "Ünïcødé/用户-δοκιμή 🙂 " + "長" * 20 + "-" + "z" * 60
    uni_ids = _seed(api, key, uni_user, [
        {"userAgent": LONG_UA, "deviceInfo": "設備 " + "名" * 80, "deviceId": "ид-" + "w" * 120,
         "ipAddress": "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe", "geoLocation": {"country": "JP", "city": "東京都" * 10}},
        {"userAgent": "curl/8.4.0", "deviceInfo": "‮reversed text‬ and ＷＩＤＥ"},
    ])
    api.get("/sessions/not-a-real-session-id-x", headers={"X-Api-Key": key}, expect=(400, 404))  # a 4xx

    out = _out_dir()
    result = _run_browser(tmp_path, {
        "scenario": "full", "baseUrl": srv.url, "key": key, "wrongKey": wrong, "narrowKey": narrow,
        "user": {"id": user, "sessions": ids}, "unicodeUser": {"id": uni_user, "sessions": uni_ids},
        "outDir": str(out),
    })

    assert result["csp"] == CSP
    assert "does not know this key" in result["wrongKeyMessage"]
    assert "needs both sessions and admin" in result["narrowKeyMessage"]
    assert result["storedKey"] == "present" and result["localStorageEmpty"]
    assert result["keyAfterForget"] is None
    assert "API key" in result["authState"]
    # Readable user agents, relative times.
    assert "Chrome 120 on macOS" not in result["firstRowText"]
    assert "Edge 120 on macOS" in result["firstRowText"], result["firstRowText"]
    assert "ago" in result["firstRowText"] or "just now" in result["firstRowText"]
    assert result["unicodeTitle"] == f"Sessions of {uni_user}"
    # Recent activity: the user's latest events (the four creates, newest
    # first: no revocation yet when the page was read).
    assert result["activity"] == ["created"] * 4, result["activity"]

    # The overview shows what /metrics said.
    shown = result["overview"]["shown"]
    want = _expected_overview(result["overview"]["metricsText"])
    assert want["ov-active"] == 6  # 4 + 2 seeded; revocations come later
    assert want["ov-validations"] >= 18
    for k, v in want.items():
        got = shown[k]["value"]
        if v is None:
            assert got is None, (k, shown[k])
        else:
            assert got == pytest.approx(v, rel=1e-9, abs=1e-12), f"{k}: page shows {shown[k]}, /metrics says {v}"
    assert shown["ov-active"]["text"] == "6"
    assert shown["ov-rps"]["value"] is not None and shown["ov-rps"]["value"] >= 0
    assert shown["ov-ready"]["text"] == "Ready"
    assert shown["ov-p95"]["text"].endswith("ms") or shown["ov-p95"]["text"].endswith(" s")

    # History from the audit trail: the active session and the revoked one.
    assert result["activeDetail"]["state"] == "Active"
    assert result["activeDetail"]["events"][0] == "created"
    meta = result["activeDetail"]["meta"]
    assert "Firefox" not in meta and "Chrome 119 on Android 14" in meta
    assert "urn:example:loa:2" in meta and "pwd, otp" in meta and '"plan": "pro"' in meta
    assert "null" not in meta
    ended = result["endedDetail"]
    assert ended["state"].startswith("Ended")
    assert [e["event"] for e in ended["events"]] == ["created", "revoked"]
    assert "revoked" in ended["events"][1]["text"] and "ops" in ended["events"][1]["text"]
    assert ended["back"] == f"← Sessions of {user}"

    # And the API agrees with what the page did.
    left = api.get(f"/users/{requests.utils.quote(user, safe='')}/sessions", headers={"X-Api-Key": key},
                   expect=200).json()
    assert [s["sessionId"] for s in left["sessions"]] == [ids[2]]
    ev = api.get(f"/users/{requests.utils.quote(user, safe='')}/events", headers={"X-Api-Key": key},
                 expect=200).json()["events"]
    reasons = sorted((e["sessionId"], e["reason"]) for e in ev if e["event"] == "revoked")
    assert reasons == sorted([(ids[1], "revoked"), (ids[0], "user_revoked"), (ids[3], "user_revoked")])
    assert all(e["actor"] == "ops" for e in ev if e["event"] == "revoked")
    # The key never reached the log.
    # No key reached the log, the audit log or the store.
    blobs = [srv.log_text().encode()] + [p.read_bytes() for p in srv.data_dir.rglob("*") if p.is_file()]
    for k in (key, narrow, wrong):
        assert not any(k.encode() in b for b in blobs), "an API key was written to disk"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_console_without_keys_on_loopback(server, tmp_path, host):
    """Protected mode: the console works by any loopback name, writes
    included (its fetches carry its own loopback Origin)."""
    user = new_user("console-open")
    ids = [server.api.create(user, userAgent=FIREFOX_WIN, geoLocation="Paris, FR")["sessionId"],
           server.api.create(user, userAgent=FIREFOX_WIN)["sessionId"]]
    result = _run_browser(tmp_path, {
        "scenario": "nokey", "baseUrl": f"http://{host}:{server.port}", "key": "",
        "user": {"id": user, "sessions": ids}, "outDir": str(_out_dir()),
    })
    assert "No key needed" in result["authState"]
    # geoLocation may be a string (the OpenAPI example): shown as given, not "—".
    assert "Paris, FR" in result["firstRowText"], result["firstRowText"]
    server.api.get_session(ids[1], expect=404)


def test_console_through_a_rebound_name_changes_nothing(server, tmp_path):
    """DNS rebinding in a real browser: Chromium resolves a name of the
    attacker's to 127.0.0.1. The console's static files load, but protected
    mode refuses every API call of that page, says why, and neither the page
    (same name) nor a cross-site post to 127.0.0.1 changes anything."""
    user = new_user("rebind")
    s = server.api.create(user)
    result = _run_browser(tmp_path, {
        "scenario": "rebind", "baseUrl": server.url, "key": "", "rebindHost": "rebind.test",
        "user": {"id": user, "sessions": [s["sessionId"]]}, "outDir": str(_out_dir()),
    })
    assert "protected mode" in result["loginMessage"] and "rebind.test" in result["loginMessage"], result
    assert result["sameNameAttack"]["status"] == 403, result["sameNameAttack"]
    assert "Host 'rebind.test:" in result["sameNameAttack"]["detail"]
    assert result["crossSiteStatus"] == 403
    assert server.api.validate(s["token"])["isValid"] is True
    log = server.log_text()
    assert "protected_mode_refused reason=host host=rebind.test" in log
    assert "protected_mode_refused reason=origin origin=http://rebind.test" in log


def test_console_modules_under_node():
    """metrics.js, ua.js and format.js under node's test runner."""
    assert shutil.which("node"), "node is needed (scripts/install-deps.sh test)"
    r = subprocess.run(["node", "--test", str(BROWSER_DIR / "modules.test.mjs")], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


# ---------------------------------------------------------------------------
# The self-service page (/account/)
# ---------------------------------------------------------------------------
def test_account_page_is_served_with_the_same_csp(server):
    api = server.api
    html = _page_html(api, "account")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script> in account/index.html"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son[a-z]+=", html)
    assert "http://" not in html and "https://" not in html
    for name in ("index.html", "account.js", "account.css"):
        r = api.get(f"/account/{name}", expect=200)
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.content == (REPO / "account" / name).read_bytes(), name
    api.get("/account/nope.js", expect=404)
    text = (REPO / "account" / "account.js").read_text()
    assert "innerHTML" not in text and "eval(" not in text and "X-Api-Key" not in text
    # The page's imports are the console's shared modules, which exist.
    for imp in re.findall(r"from '([^']+)'", text):
        assert imp.startswith("../console/") and (REPO / "console" / imp[len("../console/"):]).exists(), imp


def test_account_page_in_chromium(make_server, tmp_path):
    """Issue 19's done-when: a user signed in from two places sees both on
    the page with the right one marked "this device", signs the other out
    from the page, and the other's token stops validating."""
    srv = make_server()
    api = srv.api
    user = new_user("account")
    here = api.create(user, userAgent=EDGE_MAC, deviceInfo="Work laptop", ipAddress="203.0.113.7",
                      geoLocation={"country": "FR", "city": "Paris"})
    there = api.create(user, userAgent=SAFARI_IPHONE, deviceInfo="iPhone", ipAddress="198.51.100.23")
    third = api.create(user, userAgent=FIREFOX_WIN, deviceInfo="Home PC")
    stranger = api.create(new_user("account-other"), userAgent=CHROME_ANDROID)
    for s in (here, there, third, stranger):
        record_token(s["token"])
    out = _out_dir()
    result = _run_browser(tmp_path, {
        "scenario": "account", "baseUrl": srv.url, "outDir": str(out),
        "account": {"token": here["token"], "other": there["sessionId"], "tokenOnly": third["token"]},
    })
    before = {d["id"]: d for d in result["accountBefore"]}
    assert set(before) == {here["sessionId"], there["sessionId"], third["sessionId"]}, before
    assert [i for i, d in before.items() if d["current"]] == [here["sessionId"]]
    assert "This device" in before[here["sessionId"]]["text"]
    assert "This device" not in before[there["sessionId"]]["text"]
    assert "Safari" in before[there["sessionId"]]["text"] and "iPhone" in before[there["sessionId"]]["text"]
    assert "Paris" in before[here["sessionId"]]["text"]
    after = {d["id"] for d in result["accountAfter"]}
    assert after == {here["sessionId"], third["sessionId"]}, after
    # The other device's token no longer validates; this one, and other users', still do.
    assert api.validate(there["token"])["isValid"] is False
    assert api.validate(here["token"])["isValid"] is True
    assert api.validate(stranger["token"])["isValid"] is True
    ev = [e for e in api.get(f"/sessions/{there['sessionId']}/events", expect=200).json()["events"]
          if e["event"] == "revoked"]
    assert ev and ev[0]["actor"] == f"self:{here['sessionId']}"
    # Without the cookie, a pasted token works; it stays in the tab, never in the URL.
    by_token = {d["id"]: d["current"] for d in result["accountByToken"]}
    assert by_token == {here["sessionId"]: False, third["sessionId"]: True}, by_token
    assert result["accountStorageHasToken"] and third["token"] not in result["accountUrl"]
