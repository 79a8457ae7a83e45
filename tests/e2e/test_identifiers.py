"""The identifier rule (docs/security.md, "Identifiers"): every identifier a
client chooses that can reach an HTTP header or a log line - userId,
deviceId, acr, each amr entry - is valid UTF-8 of bounded length without
control characters (C0, DEL, C1), U+2028/U+2029, or whitespace at either
end; a create that breaks it gets a 400 whose detail names the field and
the rule. Inner spaces are kept. User ids in paths name stored sessions and
match them byte for byte (sessions stored before the rule stay reachable).
Log lines quote the values a client chose, so none can forge a key=value
field, and escape C1 controls and separators. (What a gateway forwards:
test_forward_auth.py.)"""
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from conftest import HTTP_TIMEOUT, db_exec, new_user, problem_detail

# (id, value, what the detail says is wrong)
BREAKING = [
    ("empty", "", "must not be empty"),
    ("leading-space", " admin", "begin with whitespace"),
    ("trailing-space", "admin ", "end with whitespace"),
    ("only-spaces", "   ", "only whitespace"),
    ("leading-tab", "\tadmin", "control characters"),
    ("leading-nbsp", "\u00a0admin", "begin with whitespace"),
    ("trailing-ideographic-space", "admin\u3000", "end with whitespace"),
    ("trailing-bom", "admin\ufeff", "end with whitespace"),
    ("nel", "a\u0085b", "control characters"),
    ("c1-first", "a\u0080b", "control characters"),
    ("c1-csi", "a\u009b31mb", "control characters"),
    ("c1-last", "a\u009fb", "control characters"),
    ("del", "a\u007fb", "control characters"),
    ("line-separator", "a\u2028b", "separator"),
    ("paragraph-separator", "a\u2029b", "separator"),
]
FIELDS = {
    "userId": lambda v: {"userId": v},
    "deviceId": lambda v: {"userId": new_user(), "deviceId": v},
    "acr": lambda v: {"userId": new_user(), "acr": v},
    "amr": lambda v: {"userId": new_user(), "amr": ["pwd", v]},
}


@pytest.mark.parametrize("value,why", [(v, w) for _, v, w in BREAKING], ids=[i for i, _, _ in BREAKING])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_create_refuses_identifiers_that_break_the_rule(api, field, value, why):
    r = api.post("/sessions", json=FIELDS[field](value), expect=400)
    detail = problem_detail(r)
    assert field in detail and why in detail, detail
    assert "identifier is 1 to" in detail and "whitespace at either end" in detail, \
        f"the detail should state the rule: {detail!r}"


def test_create_keeps_inner_spaces_and_non_ascii_exactly(api):
    body = {"userId": "Jean  Dupont", "deviceId": "Pixel 8 Pro", "acr": "urn:example:loa 2",
            "amr": ["pwd", "hwk"]}
    for uid in ("Jean  Dupont", "x except=- count=999", "élise", "日本 語", "tenant/a+b%20c",
                'q"uote\\d'):
        body["userId"] = uid
        s = api.create(**body)
        got = api.get_session(s["sessionId"]).json()
        assert {k: got[k] for k in body} == body


def test_path_user_ids_match_stored_ids_byte_for_byte(make_server):
    """A session stored before the rule under " <user>" (the row is changed
    behind a stopped server) is not "<user>": listing and revoking one never
    touches the other, and the old row stays reachable by its exact id."""
    srv = make_server()
    user = new_user()
    mine = srv.api.create(user)
    old = srv.api.create(user)
    srv.stop()
    db_exec(srv.data_dir, "UPDATE sessions SET user_id = ? WHERE id = ?", (" " + user, old["sessionId"]))
    srv.start()
    listed = srv.api.list_user(user).json()["sessions"]
    assert [s["sessionId"] for s in listed] == [mine["sessionId"]]
    assert srv.api.delete(f"/users/{user}/sessions", expect=200).json() == {"deleted": 1}
    assert srv.api.validate(old["token"])["isValid"] is True
    padded = quote(" " + user, safe="")
    listed = srv.api.get(f"/users/{padded}/sessions", expect=200).json()
    assert listed["userId"] == " " + user and [s["sessionId"] for s in listed["sessions"]] == [old["sessionId"]]
    assert srv.api.delete(f"/users/{padded}/sessions", expect=200).json() == {"deleted": 1}
    assert srv.api.validate(old["token"])["isValid"] is False
    # Not UTF-8 after decoding: refused, naming the parameter (sent to
    # sessiond itself: Prism cannot relay the path).
    r = requests.get(srv.direct_url + "/users/%FFadmin/sessions", timeout=HTTP_TIMEOUT)
    assert r.status_code == 400 and "userId" in problem_detail(r)


def log_fields(line):
    """The key=value fields of a log line after its time, level and event name,
    read as logfmt: a value is a bare word or a double-quoted string with
    backslash escapes. Returns a list of (key, value)."""
    rest = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
    out, i = [], 0
    while i < len(rest):
        if rest[i] == " ":
            i += 1
            continue
        j = i
        while j < len(rest) and rest[j] not in " =":
            j += 1
        key = rest[i:j]
        if j >= len(rest) or rest[j] != "=":
            out.append((key, None))  # a bare word
            i = j
            continue
        j += 1
        if j < len(rest) and rest[j] == '"':
            j += 1
            value = ""
            while j < len(rest) and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < len(rest):
                    j += 1
                value += rest[j]
                j += 1
            i = j + 1
        else:
            k = j
            while k < len(rest) and rest[k] != " ":
                k += 1
            value, i = rest[j:k], k
        out.append((key, value))
    return out


def log_lines(srv, event):
    text = srv.log_text()
    return [ln for ln in text.splitlines() if f" {event} " in ln]


def test_log_lines_quote_client_chosen_values(make_server):
    """A user id with spaces, '=' or quotes stays one field of the line: no
    bare count=999 can be forged into a create's or a revocation's line."""
    srv = make_server()
    for uid in ("x except=- count=999", 'y" count=999 user="z', "back\\slash count=999"):
        s = srv.api.create(uid)
        created = [log_fields(ln) for ln in log_lines(srv, "session_created") if s["sessionId"] in ln]
        assert created == [[("session", s["sessionId"]), ("user", uid)]], \
            f"the create of {uid!r} logged {log_lines(srv, 'session_created')[-1]!r}"
        srv.api.delete(f"/users/{quote(uid, safe='')}/sessions", expect=200)
        revoked = [log_fields(ln) for ln in log_lines(srv, "user_sessions_revoked")]
        assert revoked[-1] == [("user", uid), ("except", "-"), ("count", "1")], \
            f"the revocation of {uid!r} logged {log_lines(srv, 'user_sessions_revoked')[-1]!r}"
    # Plain ids are written as they are.
    s = srv.api.create("alice.example-1")
    assert f"session_created session={s['sessionId']} user=alice.example-1" in srv.log_text()


def test_log_lines_escape_c1_controls_and_separators(make_server):
    """Ids in paths follow the older, wider rule (so that old rows stay
    reachable); their C1 controls and separators are escaped in the log, as
    C0 controls always were: the log holds no raw U+0085, U+009B or U+2028."""
    srv = make_server()
    srv.api.delete("/users/a%C2%85b%C2%9B2J%E2%80%A8c%E2%80%A9d/sessions", expect=200)
    raw = b"".join(Path(p).read_bytes() for p in srv.log_paths)
    for bad in ("\u0085", "\u009b", "\u2028", "\u2029"):
        assert bad.encode() not in raw, f"raw {bad!r} in the log"
    line = log_lines(srv, "user_sessions_revoked")[-1]
    assert 'user="a\\u0085b\\u009b2J\\u2028c\\u2029d"' in line, line
