/*
 * jwt_verify.c - a service behind the gateway checking sessiond's access
 * tokens offline with libsessiond-client (docs/tokens.md).
 *
 *   cc jwt_verify.c $(pkg-config --cflags --libs sessiond-client) -o jwt_verify
 *   ./jwt_verify http://127.0.0.1:8080 https://sessions.example.com orders-api [POLL_MS]
 *
 * Reads one access token a line from stdin and answers a line for each:
 * "ok sub=... sid=..." or "refused <reason>"; both end with "polls=N", how
 * often the revocation feed has been read. A line "poll" reads the feed at
 * once. The API key (scope validate, for the feed) comes from the
 * environment variable SESSIOND_API_KEY, never from the command line.
 * Encrypted tokens (sessiond --jwt-encrypt-key): SESSIOND_JWT_DECRYPT_KEY
 * names the PEM file of the recipient's P-256 private key. Pinned keys:
 * SESSIOND_JWKS holds a JWK Set (JSON) to trust instead of fetching the
 * server's (the feed is still polled from URL).
 * tests/e2e/test_jwt_verify.py drives it.
 */
#define _POSIX_C_SOURCE 200809L /* getline */
#include <sessiond/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s URL ISSUER AUDIENCE [POLL_MS]\n", argv[0]);
        return 2;
    }
    sd_client_options co = {.base_url = argv[1], .api_key = getenv("SESSIOND_API_KEY")};
    sd_client *c;
    int rc = sd_client_open(&co, &c);
    if (rc) {
        fprintf(stderr, "open: %s\n", sd_client_strerror(rc));
        return 1;
    }
    sd_client_jwt_options vo = {
        .issuer = argv[2],
        .audience = argv[3],
        .poll_interval_ms = argc == 5 ? strtol(argv[4], NULL, 10) : 0, /* 0: every 5 s */
        .decrypt_key_file = getenv("SESSIOND_JWT_DECRYPT_KEY"),        /* NULL: signed tokens */
        .jwks_json = getenv("SESSIOND_JWKS"), /* NULL: fetch the server's */
    };
    sd_client_jwt_verifier *v;
    if ((rc = sd_client_jwt_verifier_new(c, &vo, &v))) {
        fprintf(stderr, "verifier: %s\n", sd_client_strerror(rc));
        sd_client_close(c);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (strcmp(line, "poll") == 0) {
            rc = sd_client_jwt_poll(v);
            printf("%s", rc ? sd_client_strerror(rc) : "polled");
        } else {
            sd_client_jwt_claims claims;
            rc = sd_client_jwt_verify(v, line, &claims);
            if (rc == 0)
                printf("ok sub=%s sid=%s exp=%lld", claims.sub, claims.sid, (long long)claims.exp);
            else
                printf("refused %s", sd_client_strerror(rc));
        }
        printf(" polls=%lld\n", (long long)sd_client_jwt_polls(v));
        fflush(stdout);
    }
    free(line);
    sd_client_jwt_verifier_free(v);
    sd_client_close(c);
    return 0;
}
