"""/users/{userId}/sessions listing and deletion, and bulk delete."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import quote

import pytest

from conftest import check_session, skip_if_prism_cannot_relay, fmt_time, history_rows, new_user, parse_time


def _list_all(api, user, limit=50, max_pages=100):
    pages = []
    cursor = None
    for _ in range(max_pages):
        params = {"limit": str(limit)}
        if cursor is not None:
            params["cursor"] = cursor
        r = api.get(f"/users/{quote(user, safe='')}/sessions", params=params, expect=200)
        body = r.json()
        assert set(body) == {"userId", "sessions", "nextCursor"}, f"list keys: {sorted(body)}"
        assert body["userId"] == user
        assert len(body["sessions"]) <= limit, f"page larger than limit {limit}: {len(body['sessions'])}"
        pages.append(body["sessions"])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str) and cursor, f"nextCursor must be a non-empty string or null: {cursor!r}"
    raise AssertionError(f"pagination did not terminate after {max_pages} pages")


def test_list_shape_and_order(api):
    user = new_user()
    made = [api.create(user) for _ in range(3)]
    base = max(parse_time(m["createdAt"]) for m in made)
    time.sleep(0.4)
    # distinct lastSeen values between creation and now: made[1] newest, then made[2], then made[0]
    seen = {0: base + timedelta(milliseconds=100), 1: base + timedelta(milliseconds=300),
            2: base + timedelta(milliseconds=200)}
    for i, m in enumerate(made):
        api.put(f"/sessions/{m['sessionId']}", json={"lastSeen": fmt_time(seen[i])}, expect=200)
    body = api.list_user(user).json()
    assert body["userId"] == user and body["nextCursor"] is None
    for x in body["sessions"]:
        check_session(x, where="listed session")
    got = [x["sessionId"] for x in body["sessions"]]
    want = [made[1]["sessionId"], made[2]["sessionId"], made[0]["sessionId"]]
    assert got == want, f"sessions must be ordered by lastSeen desc: got {got}, want {want}"


def test_list_unknown_user_is_empty(api):
    body = api.list_user(new_user("nobody")).json()
    assert body["sessions"] == [] and body["nextCursor"] is None


def test_list_excludes_revoked(api):
    user = new_user()
    a, b = api.create(user), api.create(user)
    api.delete(f"/sessions/{a['sessionId']}", expect=204)
    got = [x["sessionId"] for x in api.list_user(user).json()["sessions"]]
    assert got == [b["sessionId"]], f"revoked session must not be listed: {got}"


def test_pagination_120_sessions(make_server):
    # More than the default per-user limit (100): lift it for this test.
    api = make_server("--max-sessions-per-user", "0").api
    user = new_user("pager")
    with ThreadPoolExecutor(4) as ex:
        made = list(ex.map(lambda _: api.create(user)["sessionId"], range(120)))
    assert len(set(made)) == 120
    pages = _list_all(api, user, limit=50)
    sizes = [len(p) for p in pages]
    assert sizes == [50, 50, 20], f"120 sessions with limit=50 should page as [50, 50, 20], got {sizes}"
    flat = [x for p in pages for x in p]
    ids = [x["sessionId"] for x in flat]
    dups = {i for i in ids if ids.count(i) > 1}
    assert not dups, f"pagination returned duplicates: {sorted(dups)[:5]}"
    missing = set(made) - set(ids)
    assert not missing, f"pagination has gaps: {len(missing)} sessions never returned"
    assert set(ids) == set(made)
    seen = [parse_time(x["lastSeen"]) for x in flat]
    assert all(seen[i] >= seen[i + 1] for i in range(len(seen) - 1)), \
        "sessions across pages must be ordered by lastSeen descending"
    # a different page size walks the same set
    pages7 = _list_all(api, user, limit=7)
    assert [len(p) for p in pages7] == [7] * 17 + [1]
    assert sorted(x["sessionId"] for p in pages7 for x in p) == sorted(made)


def test_list_default_and_limit_bounds(api):
    user = new_user()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda _: api.create(user), range(55)))
    body = api.list_user(user).json()
    assert len(body["sessions"]) == 50 and body["nextCursor"], "default limit is 50"
    body = api.list_user(user, limit="1").json()
    assert len(body["sessions"]) == 1 and body["nextCursor"]
    body = api.list_user(user, limit="1000").json()
    assert len(body["sessions"]) == 55 and body["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "", "1.5", "99999999999999999999"])
def test_list_bad_limit_400(api, limit):
    r = api.get(f"/users/{new_user()}/sessions", params={"limit": limit}, expect=400)
    assert "limit" in r.json().get("detail", ""), f"detail should name 'limit': {r.json()}"


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "AAAA", "eyJ4IjoxfQ", "%00"])
def test_list_bad_cursor_400(api, cursor):
    user = new_user()
    api.create(user)
    api.get(f"/users/{user}/sessions", params={"cursor": cursor}, expect=400)


WEIRD_USERS = ["team/alice smith", "ünïcødé/用户 🙂", "a b  c", "100%", "a?b#c&d=e", "/leading", "trailing/",
               "a%2Fb", "..", "x+y"]


@pytest.mark.parametrize("user", WEIRD_USERS)
def test_weird_user_ids(api, user):
    user = user + "|" + new_user("")[1:9]    # keep tests independent
    s = api.create(user)
    assert s["userId"] == user
    body = api.list_user(user).json()
    assert body["userId"] == user, f"list userId {body['userId']!r} != {user!r}"
    assert [x["sessionId"] for x in body["sessions"]] == [s["sessionId"]], \
        f"listing {quote(user, safe='')} should return exactly the one session"
    r = api.delete(f"/users/{quote(user, safe='')}/sessions", expect=200)
    assert r.json() == {"deleted": 1}
    assert api.list_user(user).json()["sessions"] == []


def test_slash_user_does_not_match_prefix_user(api):
    base = new_user("pfx")
    a = api.create(base)
    b = api.create(base + "/child")
    got = [x["sessionId"] for x in api.list_user(base).json()["sessions"]]
    assert got == [a["sessionId"]], f"user {base!r} must not see sessions of {base + '/child'!r}: {got}"
    got = [x["sessionId"] for x in api.list_user(base + "/child").json()["sessions"]]
    assert got == [b["sessionId"]]


def test_delete_user_sessions(module_server):
    api = module_server.api
    user, other = new_user(), new_user()
    mine = [api.create(user) for _ in range(4)]
    theirs = api.create(other)
    r = api.delete(f"/users/{user}/sessions", expect=200)
    assert r.json() == {"deleted": 4}
    assert api.list_user(user).json()["sessions"] == []
    for m in mine:
        assert api.validate(m["token"])["isValid"] is False
        rows = history_rows(module_server.data_dir, m["sessionId"])
        assert [x[3] for x in rows] == ["user_revoked"], f"history for {m['sessionId']}: {rows}"
    assert api.validate(theirs["token"])["isValid"] is True, "other users' sessions must be untouched"
    assert api.delete(f"/users/{user}/sessions", expect=200).json() == {"deleted": 0}
    assert api.delete(f"/users/{new_user('nobody')}/sessions", expect=200).json() == {"deleted": 0}


def test_delete_user_sessions_except(api):
    user = new_user()
    made = [api.create(user) for _ in range(3)]
    keep = made[1]["sessionId"]
    r = api.delete(f"/users/{user}/sessions", params={"except": keep}, expect=200)
    assert r.json() == {"deleted": 2}
    got = [x["sessionId"] for x in api.list_user(user).json()["sessions"]]
    assert got == [keep], f"only the 'except' session should remain: {got}"
    assert api.validate(made[1]["token"])["isValid"] is True


def test_bulk_delete(module_server):
    api = module_server.api
    u1, u2, u3 = new_user(), new_user(), new_user()
    s1 = [api.create(u1) for _ in range(3)]
    s2 = [api.create(u2) for _ in range(2)]
    s3 = api.create(u3)
    body = {"sessionIds": [s1[0]["sessionId"], s1[1]["sessionId"], s2[0]["sessionId"], "AAAAAAAAAAAAAAAAAAAAAA"],
            "userIds": [u2, new_user("nobody")]}
    r = api.post("/sessions/bulk-delete", json=body, expect=200)
    assert r.json() == {"deleted": 4}, \
        f"2 of u1 + both of u2 (one named twice) = 4 distinct sessions, got {r.json()}"
    assert [x["sessionId"] for x in api.list_user(u1).json()["sessions"]] == [s1[2]["sessionId"]]
    assert api.list_user(u2).json()["sessions"] == []
    assert api.validate(s3["token"])["isValid"] is True
    for s in (s1[0], s1[1], s2[0], s2[1]):
        rows = history_rows(module_server.data_dir, s["sessionId"])
        assert [x[3] for x in rows] == ["bulk_revoked"], f"history for bulk-deleted {s['sessionId']}: {rows}"
    # repeating it deletes nothing
    assert api.post("/sessions/bulk-delete", json=body, expect=200).json() == {"deleted": 0}
    # only one list given
    assert api.post("/sessions/bulk-delete", json={"userIds": [u3]}, expect=200).json() == {"deleted": 1}
    assert api.post("/sessions/bulk-delete", json={"sessionIds": [s1[2]["sessionId"]]},
                    expect=200).json() == {"deleted": 1}


def test_bulk_delete_1000_entries_ok(api):
    user = new_user()
    s = api.create(user)
    ids = [s["sessionId"]] + [f"AAAAAAAAAAAAAAAAAA{i:04d}" for i in range(999)]
    r = api.post("/sessions/bulk-delete", json={"sessionIds": ids, "userIds": [f"u{i}" for i in range(1000)]},
                 expect=200)
    assert r.json() == {"deleted": 1}


BAD_BULK = [
    ("empty-object", {}),
    ("both-empty", {"sessionIds": [], "userIds": []}),
    ("one-empty", {"sessionIds": []}),
    ("too-many-sessionIds", {"sessionIds": [f"id{i}" for i in range(1001)]}),
    ("too-many-userIds", {"userIds": [f"u{i}" for i in range(1001)]}),
    ("sessionIds-not-array", {"sessionIds": "abc"}),
    ("userIds-not-array", {"userIds": {"a": 1}}),
    ("sessionIds-numbers", {"sessionIds": [1, 2]}),
    ("userIds-null-entry", {"userIds": [None]}),
    ("not-object", ["a"]),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BULK], ids=[i for i, _ in BAD_BULK])
def test_bulk_delete_validation(api, body):
    api.post("/sessions/bulk-delete", json=body, expect=400)


def test_bulk_delete_bad_json_and_content_type(api):
    skip_if_prism_cannot_relay(b"{nope")
    api.post("/sessions/bulk-delete", data=b"{nope", headers={"Content-Type": "application/json"}, expect=400)
    api.post("/sessions/bulk-delete", data=json.dumps({"userIds": ["x"]}).encode(),
             headers={"Content-Type": "text/plain"}, expect=415)
