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
 * server's (the feed is still polled from URL). The verifier keeps the
 * tokens it has verified (sd_client_jwt_cache): SESSIOND_JWT_CACHE sets
 * how many (0: none), and a line "cache" answers "cache hits=H misses=M".
 * SESSIOND_JWKS_MAX_AGE (seconds) refetches the key set that often.
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
        .jwks_max_age_s =
            getenv("SESSIOND_JWKS_MAX_AGE") ? atoi(getenv("SESSIOND_JWKS_MAX_AGE")) : 0,
    };
    sd_client_jwt_verifier *v = NULL;
    if ((rc = sd_client_jwt_verifier_new(c, &vo, &v)) == 0 && getenv("SESSIOND_JWT_CACHE"))
        rc = sd_client_jwt_cache(v, strtoul(getenv("SESSIOND_JWT_CACHE"), NULL, 10));
    if (rc) {
        fprintf(stderr, "verifier: %s\n", sd_client_strerror(rc));
        sd_client_jwt_verifier_free(v);
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
        } else if (strcmp(line, "cache") == 0) {
            int64_t hits, misses;
            sd_client_jwt_cache_counts(v, &hits, &misses);
            printf("cache hits=%lld misses=%lld", (long long)hits, (long long)misses);
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
