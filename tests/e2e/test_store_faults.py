"""Store faults at the wrappers (issue 17 item 4; src/store/fault.h): the
sanitizer build reads SESSIOND_STORE_FAULTS and makes a chosen store
operation fail (the store is unavailable), answer busy (the writer's queue
is full) or stall, so that every handler's error path runs without a real
outage. What is proved: each route answers 503 with a problem+json body and
a sentence (never another 5xx, never a success), a refused write leaves
nothing behind, the server keeps serving, and a stalled read still answers
right. The release build has no fault hook: these tests skip there.
"""
import pytest

from conftest import new_user, problem_detail, record_token

pytestmark = pytest.mark.no_prism("faults are injected into the server, not the contract")


def faulty(make_server, spec, *args):
    srv = make_server("--sweep-interval", "1h", *args, env={"SESSIOND_STORE_FAULTS": spec})
    if "injecting faults" not in srv.log_text():
        pytest.skip("the release build has no store fault hook (the sanitizer build does)")
    return srv


def assert_503(r, words):
    assert r.status_code == 503, f"{r.status_code}: {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert words in problem_detail(r), problem_detail(r)


@pytest.mark.parametrize("spec,words", [("create=fail", "store cannot take the request"),
                                        ("create=busy", "overloaded")])
def test_a_refused_create_answers_503_and_leaves_nothing(make_server, spec, words):
    srv = faulty(make_server, spec + "*1")
    user = new_user("fault")
    assert_503(srv.api.post("/sessions", json={"userId": user}), words)
    assert srv.api.list_user(user).json()["sessions"] == []
    s = srv.api.create(user)  # the fault was for one call only
    assert srv.api.validate(s["token"], touch=False)["isValid"]
    assert len(srv.api.list_user(user).json()["sessions"]) == 1


def test_every_write_route_answers_503_when_the_store_fails(make_server):
    srv = faulty(make_server, "update=fail,end=fail,end_user=fail,bulk_end=fail")
    user = new_user("fault")
    s = srv.api.create(user)
    sid = s["sessionId"]
    assert_503(srv.api.put(f"/sessions/{sid}", json={"data": {"a": 1}}), "store cannot take")
    assert_503(srv.api.post(f"/sessions/{sid}/refresh",
                            headers={"Authorization": f"Bearer {s['token']}"}), "store cannot take")
    assert_503(srv.api.delete(f"/sessions/{sid}"), "store cannot take")
    assert_503(srv.api.delete(f"/users/{user}/sessions"), "store cannot take")
    assert_503(srv.api.post("/sessions/bulk-delete", json={"sessionIds": [sid]}), "store cannot take")
    # Nothing changed: the session is as created and still valid.
    got = srv.api.get_session(sid).json()
    assert got["version"] == 1 and not got.get("data"), got
    assert srv.api.validate(s["token"], touch=False)["isValid"]
    assert srv.api.get("/healthz").status_code == 200


def test_every_read_route_answers_503_when_the_store_fails(make_server):
    srv = faulty(make_server, "get=fail,get_by_token=fail,list_user=fail")
    user = new_user("fault")
    s = srv.api.create(user)
    record_token(s["token"])
    sid = s["sessionId"]
    bearer = {"Authorization": f"Bearer {s['token']}"}
    for r in (srv.api.get(f"/sessions/{sid}"),
              srv.api.get(f"/sessions/{sid}/validate"),
              srv.api.post("/sessions/validate", headers=bearer),
              srv.api.get(f"/users/{user}/sessions"),
              srv.api.get("/auth", headers=bearer)):
        assert_503(r, "store cannot take")
    assert srv.api.get("/healthz").status_code == 200


def test_a_failed_rolling_touch_does_not_fail_the_validation(make_server):
    """The touch is written behind the answer: its failure costs only the
    extension of the expiry, never the validation."""
    srv = faulty(make_server, "touch=fail")
    s = srv.api.create(new_user("fault"))
    for _ in range(3):
        assert srv.api.validate(s["token"])["isValid"]


def test_a_stalled_read_still_answers_right(make_server):
    srv = faulty(make_server, "get_by_token=stall:300*2,get=stall:300*1")
    s = srv.api.create(new_user("fault"))
    assert srv.api.validate(s["token"], touch=False)["isValid"]
    assert srv.api.get_session(s["sessionId"]).json()["sessionId"] == s["sessionId"]


def test_a_malformed_fault_spec_refuses_to_start(make_server):
    srv = make_server(env={"SESSIOND_STORE_FAULTS": "create=explode"}, start=False)
    try:
        srv.start()
    except pytest.fail.Exception:
        assert "expected fail, busy or stall" in srv.log_text()
        return
    pytest.skip("the release build has no store fault hook (the sanitizer build does)")
