/*
 * example.c - libsessiond-client in a few lines: log a user in (create a
 * session), check the token as an application would on each request, list
 * the user's sessions, log out (revoke), and see the token refused.
 *
 *   cc example.c $(pkg-config --cflags --libs sessiond-client) -o example
 *   ./example [URL]          (default http://127.0.0.1:8080; key from SESSIOND_API_KEY)
 */
#include <sessiond/client.h>

#include <stdio.h>
#include <stdlib.h>

static int fail(sd_client *c, const char *what, int rc)
{
    fprintf(stderr, "%s: %s (HTTP %d: %s)\n", what, sd_client_strerror(rc),
            sd_client_last_status(c), sd_client_last_detail(c));
    return 1;
}

int main(int argc, char **argv)
{
    sd_client_options opt = {
        .base_url = argc > 1 ? argv[1] : NULL,
        .api_key = getenv("SESSIOND_API_KEY"),
        .timeout_ms = 10000,
    };
    sd_client *c;
    int rc = sd_client_open(&opt, &c);
    if (rc) {
        fprintf(stderr, "open: %s\n", sd_client_strerror(rc));
        return 1;
    }

    /* Login: the token is the user's secret, returned this once. */
    sd_client_new_session req = {
        .user_id = "example-user",
        .device_info = "example.c",
        .ip_address = "203.0.113.7",
        .data = "{\"plan\":\"pro\"}",
    };
    sd_client_session *s;
    if ((rc = sd_client_create(c, &req, &s)))
        return fail(c, "create", rc);
    printf("created %s for %s, expires %s\n", s->session_id, s->user_id, s->expiry);

    /* Each request of the user: is the token still good? */
    sd_client_validation v;
    if ((rc = sd_client_validate_token(c, s->token, 1, &v)))
        return fail(c, "validate", rc);
    printf("valid=%d user=%s\n", v.valid, v.user_id);

    /* Device management: the user's sessions. */
    sd_client_session_list *l;
    if ((rc = sd_client_list_user(c, "example-user", 0, NULL, &l)))
        return fail(c, "list", rc);
    printf("%zu active session(s)\n", l->count);
    sd_client_session_list_free(l);

    /* A revocation decided on what was read: refused once the session has
     * changed since (here, a version it never had). */
    rc = sd_client_delete_if(c, s->session_id, s->version + 1);
    printf("revoke if at version %lld: %s\n", (long long)(s->version + 1), sd_client_strerror(rc));

    /* Logout. */
    if ((rc = sd_client_delete_if(c, s->session_id, s->version)))
        return fail(c, "revoke", rc);
    if ((rc = sd_client_validate_token(c, s->token, 1, &v)))
        return fail(c, "validate", rc);
    printf("after revoke: valid=%d\n", v.valid);

    /* A revoked session is gone: the error value and the server's detail. */
    rc = sd_client_get(c, s->session_id, &(sd_client_session *){NULL});
    printf("get after revoke: %s (%s)\n", sd_client_strerror(rc), sd_client_last_detail(c));

    sd_client_session_free(s);
    sd_client_close(c);
    return v.valid ? 1 : 0;
}
