/*
 * check_client.c - what test_client_lib.py asks of the installed
 * libsessiond-client beyond examples/client/example.c: a session's own
 * lifetime, and the retries of calls that change nothing. One step a run,
 * its outcome printed as name=value words for the test to read:
 *
 *   check_client URL lifetime SECONDS
 *       creates a session with that lifetime; prints its createdAt and
 *       absoluteExpiry
 *   check_client URL validate RETRIES WAIT_MS
 *       creates a session, then validates its token with those retries
 *   check_client URL create RETRIES WAIT_MS
 *       creates a session with those retries set (writes are never retried)
 *   check_client URL health RETRIES WAIT_MS
 *       GET /healthz with those retries
 *   check_client URL me USER
 *       self-service: two sessions of USER, the first lists both, signs the
 *       other out on a stale version (refused), then on its version, then
 *       every other one
 *   check_client URL access USER
 *       an access token for a new session of USER (its length and lifetime)
 *
 * Exits 0 when the library calls behaved (whatever the server answered),
 * 1 on a usage or setup error.
 */
#include <sessiond/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int create(sd_client *c, int64_t lifetime, sd_client_session **s)
{
    sd_client_new_session req = {.user_id = "check-client"};
    return lifetime ? sd_client_create_with_lifetime(c, &req, lifetime, s)
                    : sd_client_create(c, &req, s);
}

static int dots(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '.';
    return n;
}

/* The self-service calls, each outcome printed as name=value words. */
static int self_service(sd_client *c, const char *user)
{
    sd_client_new_session req = {.user_id = user, .device_id = "laptop"};
    sd_client_session *here = NULL, *there = NULL, *third = NULL;
    sd_client_device_list *l = NULL;
    int rc = sd_client_create(c, &req, &here);
    req.device_id = "phone";
    if (!rc)
        rc = sd_client_create(c, &req, &there);
    if (!rc)
        rc = sd_client_create(c, &req, &third);
    if (!rc)
        rc = sd_client_my_sessions(c, here->token, 0, NULL, &l);
    if (rc) {
        fprintf(stderr, "setup: %s\n", sd_client_strerror(rc));
        return 1;
    }
    int current = 0;
    for (size_t i = 0; i < l->count; i++)
        current += l->devices[i].current && strcmp(l->devices[i].session_id, here->session_id) == 0;
    printf("listed=%zu current=%d user_ok=%d version=%lld\n", l->count, current,
           strcmp(l->user_id, user) == 0 && strcmp(l->current_session_id, here->session_id) == 0,
           (long long)l->devices[0].version);
    printf("stale=%d\n", sd_client_revoke_my_session(c, here->token, there->session_id, 2));
    printf("revoked=%d\n", sd_client_revoke_my_session(c, here->token, there->session_id, 1));
    printf("again=%d\n", sd_client_revoke_my_session(c, here->token, there->session_id, 0));
    int64_t n = -1;
    rc = sd_client_revoke_my_other_sessions(c, here->token, &n);
    printf("others=%d deleted=%lld\n", rc, (long long)n);
    sd_client_validation v;
    rc = sd_client_validate_token(c, third->token, 0, &v);
    printf("third_valid=%d\n", rc ? -1 : v.valid);
    sd_client_device_list_free(l);
    sd_client_session_free(here);
    sd_client_session_free(there);
    sd_client_session_free(third);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: check_client URL STEP ARGS (see the top of check_client.c)\n");
        return 1;
    }
    sd_client_options o = {.base_url = argv[1], .api_key = getenv("SESSIOND_API_KEY")};
    sd_client *c;
    if (sd_client_open(&o, &c))
        return 1;
    sd_client_session *s = NULL;
    int rc, code = 0;
    if (strcmp(argv[2], "lifetime") == 0) {
        rc = create(c, strtoll(argv[3], NULL, 10), &s);
        printf("rc=%d created_at=%s absolute_expiry=%s\n", rc, s ? s->created_at : "-",
               s ? s->absolute_expiry : "-");
    } else if (strcmp(argv[2], "validate") == 0 && argc == 5) {
        if ((rc = create(c, 0, &s))) {
            fprintf(stderr, "create: %s\n", sd_client_strerror(rc));
            code = 1;
        } else if (sd_client_set_retry(c, atoi(argv[3]), atol(argv[4]))) {
            code = 1;
        } else {
            sd_client_validation v;
            rc = sd_client_validate_token(c, s->token, 0, &v);
            printf("rc=%d valid=%d retries=%d status=%d\n", rc, rc ? -1 : v.valid,
                   sd_client_last_retries(c), sd_client_last_status(c));
        }
    } else if ((strcmp(argv[2], "create") == 0 || strcmp(argv[2], "health") == 0) && argc == 5) {
        if (sd_client_set_retry(c, atoi(argv[3]), atol(argv[4]))) {
            code = 1;
        } else {
            rc = strcmp(argv[2], "create") == 0 ? create(c, 0, &s) : sd_client_health(c);
            printf("rc=%d retries=%d status=%d\n", rc, sd_client_last_retries(c),
                   sd_client_last_status(c));
        }
    } else if (strcmp(argv[2], "me") == 0) {
        code = self_service(c, argv[3]);
    } else if (strcmp(argv[2], "access") == 0) {
        sd_client_new_session req = {.user_id = argv[3]};
        char *jwt = NULL;
        int64_t ttl = 0;
        if ((rc = sd_client_create(c, &req, &s)) == 0)
            rc = sd_client_access_token(c, s->token, &jwt, &ttl);
        printf("rc=%d jwt_parts=%d expires_in=%lld\n", rc, jwt ? dots(jwt) + 1 : 0, (long long)ttl);
        sd_client_free_secret(jwt);
    } else {
        fprintf(stderr, "check_client: unknown step '%s'\n", argv[2]);
        code = 1;
    }
    sd_client_session_free(s);
    sd_client_close(c);
    return code;
}
