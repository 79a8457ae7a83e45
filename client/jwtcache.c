/*
 * jwtcache.c - access tokens a verifier has verified, by the SHA-256 of
 * the whole compact token (JWS or JWE), holding the claims they carried
 * (docs/tokens.md, "Verifying the same token again").
 *
 * A service sees the same access token on many requests during its few
 * minutes of life; the signature (and a JWE's ECDH) of identical bytes
 * need not be checked twice. What is kept is what the first, complete
 * verification established: that those bytes were signed by a key of the
 * set and carry these claims. Everything that can change with time is
 * checked again by the caller on every use (jwt.c): exp, nbf and iat
 * against the clock, the sid against the revocation feed, and the key set
 * (a fetch of the keys empties the cache, so a retired key's tokens are
 * verified afresh and refused). The token itself is never kept, only its
 * hash: the cache holds nothing a thief could present.
 *
 * Bounded: sets of four entries, the index from the hash; a full set
 * gives up its entry that expires first. One verifier is used by one
 * thread at a time, and so is its cache: no lock.
 */
#include "internal.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 4

typedef struct entry {
    unsigned char h[32];
    bool used;
    sd_client_jwt_claims claims;
} entry;

struct sdc_vcache {
    entry *v;     /* nsets * WAYS, allocated at the first put */
    size_t nsets; /* 0: off */
    EVP_MD *sha;  /* fetched once */
    EVP_MD_CTX *md;
    int64_t hits, misses;
};

int sdc__vcache_new(size_t entries, sdc_vcache **out)
{
    *out = NULL;
    sdc_vcache *c = calloc(1, sizeof *c);
    if (!c)
        return SD_CLIENT_ENOMEM;
    c->nsets = (entries + WAYS - 1) / WAYS;
    c->sha = EVP_MD_fetch(NULL, "SHA256", NULL);
    c->md = EVP_MD_CTX_new();
    if (!c->sha || !c->md) {
        sdc__vcache_free(c);
        return SD_CLIENT_ENOMEM;
    }
    *out = c;
    return 0;
}

void sdc__vcache_free(sdc_vcache *c)
{
    if (!c)
        return;
    if (c->v)
        OPENSSL_cleanse(c->v, c->nsets * WAYS * sizeof *c->v);
    free(c->v);
    EVP_MD_CTX_free(c->md);
    EVP_MD_free(c->sha);
    free(c);
}

int sdc__vcache_resize(sdc_vcache *c, size_t entries)
{
    sdc__vcache_clear(c);
    free(c->v);
    c->v = NULL;
    c->nsets = (entries + WAYS - 1) / WAYS;
    return 0;
}

void sdc__vcache_clear(sdc_vcache *c)
{
    if (c && c->v)
        for (size_t i = 0; i < c->nsets * WAYS; i++)
            c->v[i].used = false;
}

bool sdc__vcache_on(const sdc_vcache *c)
{
    return c && c->nsets > 0;
}

int sdc__vcache_hash(sdc_vcache *c, const char *token, size_t n, unsigned char h[32])
{
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(c->md, c->sha, NULL) != 1 || EVP_DigestUpdate(c->md, token, n) != 1 ||
        EVP_DigestFinal_ex(c->md, h, &len) != 1 || len != 32)
        return SD_CLIENT_ENOMEM;
    return 0;
}

static entry *set_of(sdc_vcache *c, const unsigned char h[32])
{
    uint64_t k;
    memcpy(&k, h, sizeof k);
    return &c->v[(k % c->nsets) * WAYS];
}

sd_client_jwt_claims *sdc__vcache_find(sdc_vcache *c, const unsigned char h[32])
{
    if (!c->v) {
        c->misses++;
        return NULL;
    }
    entry *s = set_of(c, h);
    for (int w = 0; w < WAYS; w++)
        if (s[w].used && memcmp(s[w].h, h, 32) == 0) {
            c->hits++;
            return &s[w].claims;
        }
    c->misses++;
    return NULL;
}

void sdc__vcache_drop(sdc_vcache *c, const unsigned char h[32])
{
    if (!c->v)
        return;
    entry *s = set_of(c, h);
    for (int w = 0; w < WAYS; w++)
        if (s[w].used && memcmp(s[w].h, h, 32) == 0)
            s[w].used = false;
}

void sdc__vcache_put(sdc_vcache *c, const unsigned char h[32], const sd_client_jwt_claims *cl)
{
    if (!c->nsets || (!c->v && !(c->v = calloc(c->nsets * WAYS, sizeof *c->v))))
        return; /* no room: the next verification checks the signature again */
    entry *s = set_of(c, h), *victim = &s[0];
    for (int w = 0; w < WAYS; w++) {
        if (!s[w].used) {
            victim = &s[w];
            break;
        }
        if (s[w].claims.exp < victim->claims.exp)
            victim = &s[w];
    }
    memcpy(victim->h, h, 32);
    victim->claims = *cl;
    victim->used = true;
}

void sdc__vcache_counts(const sdc_vcache *c, int64_t *hits, int64_t *misses)
{
    *hits = c ? c->hits : 0;
    *misses = c ? c->misses : 0;
}
