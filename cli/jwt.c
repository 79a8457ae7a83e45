/*
 * jwt.c - sessionctl's `jwt verify`: one access token from stdin (or
 * --token-file) checked offline by libsessiond-client's verifier against
 * the server's JWK Set and revocation feed, as a service behind the
 * gateway would check it. Prints the verified claims (a table, or --json);
 * a refused token exits 6 with the reason on stderr. --decrypt-key: the
 * recipient's PEM private key, for encrypted tokens (JWE).
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void time_text(int64_t s, char *out, size_t cap)
{
    time_t t = (time_t)s;
    struct tm tm;
    if (!s || !gmtime_r(&t, &tm) || !strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, cap, "-");
}

static void print_claims(cli *x, const sd_client_jwt_claims *cl)
{
    if (x->json) {
        json_t *o = json_pack("{s:b, s:s, s:s, s:I, s:I, s:s, s:s}", "valid", 1, "sub", cl->sub,
                              "sid", cl->sid, "iat", (json_int_t)cl->iat, "exp",
                              (json_int_t)cl->exp, "kid", cl->kid, "alg", cl->alg);
        if (o && cl->acr[0])
            json_object_set_new(o, "acr", json_string(cl->acr));
        if (o && cl->auth_time)
            json_object_set_new(o, "auth_time", json_integer((json_int_t)cl->auth_time));
        cli_print_json(o);
        return;
    }
    static const char *const hdr[] = {"VALID", "USER", "SESSION ID", "EXPIRES", "KEY"};
    char exp[32];
    time_text(cl->exp, exp, sizeof exp);
    table *t = table_new(5, hdr);
    const char *row[] = {"yes", cl->sub, cl->sid, exp, cl->kid};
    table_add(t, row);
    table_print(t, stdout);
    table_free(t);
}

int cmd_jwt(cli *x)
{
    if (x->nargs != 1 || strcmp(x->args[0], "verify") != 0)
        return cli_usage_error("expected 'jwt verify' (the token is read from stdin or "
                               "--token-file, never from the command line)");
    if (!x->issuer || !x->audience)
        return cli_usage_error("jwt verify needs --issuer and --audience (the server's "
                               "--jwt-issuer and one of its --jwt-audience)");
    sd_client_jwt_options o = {
        .issuer = x->issuer, .audience = x->audience, .decrypt_key_file = x->decrypt_key};
    sd_client_jwt_verifier *v;
    int rc = sd_client_jwt_verifier_new(x->c, &o, &v);
    if (rc)
        return cli_fail(x, "jwt verify", rc);
    char *token = cli_read_token(x->file);
    if (!token) {
        sd_client_jwt_verifier_free(v);
        return EXIT_FAIL;
    }
    sd_client_jwt_claims cl;
    rc = sd_client_jwt_verify(v, token, &cl);
    explicit_bzero(token, strlen(token));
    free(token);
    sd_client_jwt_verifier_free(v);
    if (rc == 0) {
        print_claims(x, &cl);
        return EXIT_OK;
    }
    if (rc > SD_CLIENT_EJWT_MALFORMED || rc < SD_CLIENT_EJWT_ENCRYPTION)
        return cli_fail(x, "jwt verify", rc); /* could not fetch the keys or the feed */
    fprintf(stderr, "sessionctl: token refused: %s\n", sd_client_strerror(rc));
    if (x->json)
        cli_print_json(json_pack("{s:b, s:s}", "valid", 0, "reason", sd_client_strerror(rc)));
    return EXIT_INVALID;
}
