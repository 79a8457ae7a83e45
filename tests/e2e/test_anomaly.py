"""Anomaly signals and the geofence (issue 19 items 3 and 4).

Signals (new device, new country, impossible travel, session burst) are
computed at create against the user's live sessions and at validation
against the session, from the geoLocation the caller gives ("lat", "lon",
"country"); each has an action (--anomaly-*: record, flag, stepup). The
geofence (--geo-allow, --geo-deny, --geo-groups) refuses a create or a
validation from a country with 403 and a geofence_refused audit record.
Elapsed time comes from the clock fixture (the server's wall clock is moved,
nothing sleeps)."""
import json
import re
import subprocess

import pytest

from conftest import audit_log_records, SESSIOND_BIN, child_env, free_port, new_user, problem_detail, record_token, wait_for

PARIS = {"lat": 48.8566, "lon": 2.3522, "country": "FR", "city": "Paris"}
MONTMARTRE = {"lat": 48.8867, "lon": 2.3431, "country": "FR"}   # 3 km from PARIS
LYON = {"lat": 45.7640, "lon": 4.8357, "country": "FR"}         # 392 km from PARIS
TOKYO = {"lat": 35.6762, "lon": 139.6503, "country": "JP"}       # 9,712 km from PARIS
NEW_YORK = {"lat": 40.7128, "lon": -74.0060, "country": "US"}    # 5,837 km from PARIS


def _create(api, user, **fields):
    s = api.create(user, **fields)
    record_token(s["token"])
    return s


def _validate(api, token, geo=None, expect=200):
    body = {"token": token}
    if geo is not None:
        body["geoLocation"] = geo
    return api.post("/sessions/validate", json=body, expect=expect)


def _events(api, sid):
    return [e for e in api.get(f"/sessions/{sid}/events", expect=200).json()["events"]
            if e["event"] == "anomaly_detected"]


def _audit(srv, event):
    return [r for r in audit_log_records(srv) if r["event"] == event]


def test_signals_fire_on_crafted_geolocations_and_not_on_ordinary_ones(make_server, clock):
    srv = make_server("--anomaly-new-country", "flag", "--anomaly-impossible-travel", "flag",
                      "--idle-timeout", "12h", env=clock.env)
    a = srv.api
    user = new_user("geo")
    first = _create(a, user, geoLocation=PARIS)
    assert "signals" not in first, "a user's first session has nothing to be compared with"
    near = _create(a, user, geoLocation=MONTMARTRE)
    assert "signals" not in near, "the same city at once is ordinary"
    clock.advance(3 * 3600)
    lyon = _create(a, user, geoLocation=LYON)
    assert "signals" not in lyon, "392 km in 3 h is plausible, and France is known"
    assert len(a.list_user(user).json()["sessions"]) == 3
    # Tokyo right after Lyon: 9,700 km in no time, and a country never seen.
    far = _create(a, user, geoLocation=TOKYO)
    assert far["signals"] == ["newCountry", "impossibleTravel"], far
    assert a.get_session(far["sessionId"]).json()["signals"] == ["newCountry", "impossibleTravel"]
    ev = _events(a, far["sessionId"])
    reasons = sorted(e["reason"] for e in ev)
    assert len(ev) == 2 and re.fullmatch(r"impossibleTravel flag 9\d{3}km", reasons[0]), reasons
    assert reasons[1] == "newCountry flag JP", reasons
    for s in (first, near, lyon):
        assert _events(a, s["sessionId"]) == []
    assert f"anomaly_detected session={far['sessionId']} signal=impossibleTravel action=flag distance_km=" \
        in srv.log_text()
    # Flagged: every validation of it lists them; the others list none.
    v = _validate(a, far["token"]).json()
    assert v["isValid"] is True and v["signals"] == ["newCountry", "impossibleTravel"], v
    assert "signals" not in _validate(a, lyon["token"]).json()


def test_validation_from_elsewhere(make_server, clock):
    srv = make_server("--anomaly-new-country", "flag", "--anomaly-impossible-travel", "flag",
                      "--idle-timeout", "12h", env=clock.env)
    a = srv.api
    s = _create(a, new_user("geo"), geoLocation=PARIS)
    assert _validate(a, s["token"], MONTMARTRE).json().get("signals") is None
    clock.advance(3 * 3600)
    v = _validate(a, s["token"], LYON).json()
    assert v["isValid"] is True and "signals" not in v, v
    # Lyon to New York a minute later: impossible, and a new country.
    clock.advance(60)
    v = _validate(a, s["token"], NEW_YORK).json()
    assert v["isValid"] is True and v["signals"] == ["newCountry", "impossibleTravel"], v
    # Recorded on the session (a write that is not awaited): later answers
    # without a geolocation still list them, and the audit trail has them.
    wait_for(lambda: len(_events(a, s["sessionId"])) == 2, timeout=30, what="anomaly events")
    assert _validate(a, s["token"]).json()["signals"] == ["newCountry", "impossibleTravel"]
    assert a.get_session(s["sessionId"]).json()["signals"] == ["newCountry", "impossibleTravel"]
    # New York is now where it was seen: staying there fires nothing new.
    clock.advance(3600)
    _validate(a, s["token"], {"lat": 40.73, "lon": -73.99, "country": "us"})
    assert len(_events(a, s["sessionId"])) == 2
    assert "anomaly_detected session=" + s["sessionId"] in srv.log_text()


def test_record_audits_without_changing_the_answer(make_server):
    srv = make_server("--anomaly-impossible-travel", "record", "--anomaly-new-country", "record")
    a = srv.api
    user = new_user("geo")
    _create(a, user, geoLocation=PARIS)
    s = _create(a, user, geoLocation=TOKYO)
    assert s["signals"] == ["newCountry", "impossibleTravel"]  # kept on the session
    v = _validate(a, s["token"]).json()
    assert v["isValid"] is True and "signals" not in v, v
    assert {e["reason"].split()[1] for e in _events(a, s["sessionId"])} == {"record"}


def test_stepup_until_mfa_renewal(make_server):
    srv = make_server("--anomaly-impossible-travel", "stepup")
    a = srv.api
    s = _create(a, new_user("geo"), geoLocation=PARIS, mfa=True)
    v = _validate(a, s["token"], NEW_YORK).json()
    assert v == {"isValid": False, "expiry": None, "reason": "step_up_required"}, v

    def pending():
        g = a.get_session(s["sessionId"]).json()
        return g.get("stepUpRequired") is True and g
    g = wait_for(pending, timeout=30, what="the step-up recorded")
    assert g["mfa"] is False, "a step-up takes mfa back, so that raising it renews the token"
    # Without a geolocation too, by id too, until the session is renewed with mfa.
    assert _validate(a, s["token"]).json()["reason"] == "step_up_required"
    assert a.validate_id(s["sessionId"]) == {"isValid": False, "expiry": None, "reason": "step_up_required"}
    r = a.get("/auth", headers={"Authorization": f"Bearer {s['token']}"})
    assert r.status_code == 401, "every route that validates asks for the step-up"
    r = a.post("/introspect", data=f"token={s['token']}".encode(),
               headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=200)
    assert r.json() == {"active": False}
    u = a.put(f"/sessions/{s['sessionId']}", json={"mfa": True}, expect=200).json()
    record_token(u["token"])
    assert u["token"] != s["token"] and "stepUpRequired" not in u and "signals" not in u, u
    v = _validate(a, u["token"]).json()
    assert v["isValid"] is True and "signals" not in v, v
    assert a.validate_id(s["sessionId"])["isValid"] is True
    assert _validate(a, s["token"]).json()["isValid"] is False, "the old token was renewed away"
    audited = wait_for(lambda: [r for r in _audit(srv, "validation_failed") if r["reason"] == "step_up_required"],
                       timeout=30, what="step_up_required audit records")
    assert audited[0]["sessionId"] == s["sessionId"]


def test_stepup_at_create(make_server):
    srv = make_server("--anomaly-new-device", "stepup")
    a = srv.api
    user = new_user("dev")
    _create(a, user, deviceId="laptop-1")
    same = _create(a, user, deviceId="laptop-1")
    assert "signals" not in same and _validate(a, same["token"]).json()["isValid"] is True
    new = _create(a, user, deviceId="phone-7", mfa=True)
    assert new["signals"] == ["newDevice"] and new["stepUpRequired"] is True and new["mfa"] is False
    assert _validate(a, new["token"]).json()["reason"] == "step_up_required"
    u = a.put(f"/sessions/{new['sessionId']}", json={"mfa": True}, expect=200).json()
    record_token(u["token"])
    assert _validate(a, u["token"]).json()["isValid"] is True


def test_new_device_by_device_id_or_user_agent(make_server):
    srv = make_server("--anomaly-new-device", "flag")
    a = srv.api
    user = new_user("dev")
    assert "signals" not in _create(a, user, userAgent="Firefox/120")
    assert "signals" not in _create(a, user, userAgent="Firefox/120")
    other = _create(a, user, userAgent="curl/8.1")
    assert other["signals"] == ["newDevice"]
    assert _validate(a, other["token"]).json()["signals"] == ["newDevice"]
    assert _events(a, other["sessionId"])[0]["reason"] == "newDevice flag userAgent"
    # Another user's devices are not this user's.
    assert "signals" not in _create(a, new_user("dev"), userAgent="curl/8.1")


def test_session_burst(make_server, clock):
    srv = make_server("--anomaly-session-burst", "flag", "--anomaly-burst-count", "3",
                      "--anomaly-burst-window", "1m", env=clock.env)
    a = srv.api
    user = new_user("burst")
    made = [_create(a, user) for _ in range(3)]
    assert all("signals" not in s for s in made)
    fourth = _create(a, user)
    assert fourth["signals"] == ["sessionBurst"]
    assert _events(a, fourth["sessionId"])[0]["reason"] == "sessionBurst flag 4"
    clock.advance(61)
    assert "signals" not in _create(a, user), "the earlier creates left the window"


def test_geofence_refuses_with_403_and_an_audit_record(make_server):
    srv = make_server("--geo-deny", "RU,KP", "--geo-groups", "eu-staff=allow:FR,DE;ops=deny:US")
    a = srv.api
    user = new_user("fence")
    r = a.post("/sessions", json={"userId": user, "geoLocation": {"country": "RU"}}, expect=403)
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "RU" in problem_detail(r) and "geofence" in problem_detail(r)
    assert a.list_user(user).json()["sessions"] == []
    rec = wait_for(lambda: _audit(srv, "geofence_refused"), timeout=30, what="geofence_refused record")
    assert rec[0]["userId"] == user and rec[0]["reason"] == "country=RU denied", rec
    # The user's events list it, though it names no session.
    ev = wait_for(lambda: [e for e in a.get(f"/users/{user}/events", expect=200).json()["events"]
                           if e["event"] == "geofence_refused"], timeout=30,
                  what="the refusal among the user's events")
    assert not ev[0].get("sessionId") and ev[0]["userId"] == user, ev
    # Elsewhere, or without a country, it is not refused.
    _create(a, user, geoLocation={"country": "US"})
    _create(a, user, geoLocation="Moscow")
    # A group's rule applies besides the deployment's.
    a.post("/sessions", json={"userId": user, "geoGroup": "eu-staff", "geoLocation": {"country": "US"}},
           expect=403)
    a.post("/sessions", json={"userId": user, "geoGroup": "ops", "geoLocation": {"country": "US"}}, expect=403)
    s = _create(a, user, geoGroup="eu-staff", geoLocation={"country": "FR"})
    assert s["geoGroup"] == "eu-staff"
    a.post("/sessions", json={"userId": user, "geoGroup": "nobody"}, expect=400)
    a.put(f"/sessions/{s['sessionId']}", json={"geoGroup": "ops"}, expect=400)
    # At validation, when the caller says where the client is.
    assert _validate(a, s["token"], {"country": "DE"}).json()["isValid"] is True
    r = _validate(a, s["token"], {"country": "US"}, expect=403)
    assert "US" in problem_detail(r)
    r = _validate(a, s["token"], {"country": "KP", "lat": 39.0, "lon": 125.75}, expect=403)
    assert _validate(a, s["token"]).json()["isValid"] is True

    def of_session():
        recs = [x for x in _audit(srv, "geofence_refused") if x.get("sessionId") == s["sessionId"]]
        return len(recs) == 2 and recs
    recs = wait_for(of_session, timeout=30, what="the validations' geofence_refused records")
    assert [x["reason"] for x in recs] == ["country=US group_not_allowed", "country=KP denied"]


def test_geo_allow(make_server):
    srv = make_server("--geo-allow", "fr, de")
    a = srv.api
    _create(a, new_user("fence"), geoLocation={"country": "FR"})
    a.post("/sessions", json={"userId": new_user("fence"), "geoLocation": {"country": "BE"}}, expect=403)


BAD_GEO = [({"lat": 91, "lon": 0}, "lat"), ({"lat": 0, "lon": "x"}, "lon"), ({"lat": 0, "lon": 180.5}, "lon"),
           ({"country": "ZZZ"}, "country"), ({"country": "F1"}, "country"), ({"country": 33}, "country"),
           ({"lat": 10}, "lon"), ({"lat": True, "lon": 1}, "lat")]


@pytest.mark.parametrize("geo,field", BAD_GEO, ids=[json.dumps(g) for g, _ in BAD_GEO])
def test_bad_geolocations_are_400(api, geo, field):
    r = api.post("/sessions", json={"userId": new_user("bad"), "geoLocation": geo}, expect=400)
    assert r.headers["Content-Type"].startswith("application/problem+json") and field in problem_detail(r)
    s = _create(api, new_user("bad"))
    r = _validate(api, s["token"], geo, expect=400)
    assert field in problem_detail(r)
    api.put(f"/sessions/{s['sessionId']}", json={"geoLocation": geo}, expect=400)


def test_validate_geolocation_must_be_an_object(api):
    s = _create(api, new_user("bad"))
    r = _validate(api, s["token"], "Paris", expect=400)
    assert "geoLocation" in problem_detail(r)
    # Without any policy a geolocation changes nothing.
    v = _validate(api, s["token"], TOKYO).json()
    assert v["isValid"] is True and "signals" not in v
    # Client-chosen signals are refused.
    api.post("/sessions", json={"userId": new_user("bad"), "signals": ["x"]}, expect=400)
    api.put(f"/sessions/{s['sessionId']}", json={"stepUpRequired": False}, expect=400)


@pytest.mark.parametrize("args,words", [
    (["--anomaly-new-device", "block"], "anomaly"),
    (["--geo-deny", "RUS"], "geo-deny"),
    (["--geo-groups", "staff=maybe:FR"], "geo-groups"),
    (["--geo-groups", "staff=allow:"], "geo-groups"),
], ids=["action", "country", "group-mode", "group-empty"])
def test_bad_settings_stop_the_start(tmp_path, args, words):
    p = subprocess.run([SESSIOND_BIN, *args, "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)],
                       cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert p.returncode == 2 and words in p.stderr.decode(), (p.returncode, p.stderr[-500:])
