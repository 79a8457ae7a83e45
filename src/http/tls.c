/*
 * tls.c - the OpenSSL side of tls.h: building the server context with the
 * Mozilla "intermediate" profile, swapping it on reload, and the
 * non-blocking handshake, read, write and close that server.c calls on a
 * TLS connection.
 *
 * OpenSSL keeps errors in a per-thread queue that SSL_get_error() consults,
 * so every failing call here empties it before returning: the next call on
 * the same loop thread starts clean.
 */
#include "http/tls.h"
#include "util/err.h"
#include "util/log.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla intermediate, TLS 1.2 part (TLS 1.3 suites: OpenSSL's default). */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char groups[] = "X25519:prime256v1:secp384r1";

struct sd_tls {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* current; each SSL holds its own reference */
};

/* Writes "<what> <file>: <OpenSSL's first reason>" and empties the queue. */
static int fail(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s %s: %s", what, file, why ? why : "unknown OpenSSL error");
    ERR_clear_error();
    return SD_ECONFIG;
}

/* The files must be readable by us: say so plainly rather than through
 * OpenSSL's "system lib". */
static int readable(const char *what, const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, file, strerror(errno));
        return SD_ECONFIG;
    }
    fclose(f);
    return 0;
}

/* An encrypted key file must fail, not prompt on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static int build_ctx(const sd_tls_options *opt, SSL_CTX **out, char *err, size_t errlen)
{
    int rc;
    if ((rc = readable("TLS certificate", opt->cert_file, err, errlen)) ||
        (rc = readable("TLS key", opt->key_file, err, errlen)))
        return rc;
    bool mtls = opt->client_ca_file && opt->client_ca_file[0];
    if (mtls && (rc = readable("TLS client CA", opt->client_ca_file, err, errlen)))
        return rc;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return fail(err, errlen, "cannot create a TLS context for", opt->cert_file);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    rc = SD_ECONFIG;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
        !SSL_CTX_set_ciphersuites(ctx, tls13_suites) || !SSL_CTX_set1_groups_list(ctx, groups) ||
        !SSL_CTX_set_dh_auto(ctx, 1)) {
        fail(err, errlen, "cannot apply the TLS profile for", opt->cert_file);
        goto out;
    }
    /* The client's cipher order (no SSL_OP_CIPHER_SERVER_PREFERENCE); a peer
     * that closes without close_notify is an EOF, as on plain TCP (HTTP
     * messages carry their own lengths). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* server.c retries writes from a buffer that may grow (realloc). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid_ctx[] = "sessiond";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, opt->cert_file) != 1) {
        fail(err, errlen, "cannot load the TLS certificate", opt->cert_file);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, opt->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        fail(err, errlen,
             mismatch ? "the TLS certificate does not match the key" : "cannot load the TLS key",
             opt->key_file);
        goto out;
    }
    if (mtls) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opt->client_ca_file);
        if (!names || SSL_CTX_load_verify_locations(ctx, opt->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            fail(err, errlen, "cannot load the TLS client CA", opt->client_ca_file);
            goto out;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
        SSL_CTX_set_verify(ctx,
                           SSL_VERIFY_PEER |
                               (opt->client_auth_required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    }
    rc = 0;
out:
    if (rc)
        SSL_CTX_free(ctx);
    else
        *out = ctx;
    return rc;
}

int sd_tls_create(const sd_tls_options *opt, sd_tls **out, char *err, size_t errlen)
{
    sd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return SD_ENOMEM;
    int rc = build_ctx(opt, &t->ctx, err, errlen);
    if (rc) {
        free(t);
        return rc;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

int sd_tls_reload(sd_tls *t, const sd_tls_options *opt, char *err, size_t errlen)
{
    SSL_CTX *fresh = NULL;
    int rc = build_ctx(opt, &fresh, err, errlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = fresh;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* live connections hold their own references */
    return 0;
}

void sd_tls_free(sd_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* ---- per connection ------------------------------------------------------ */

SSL *sd_tls_accept(sd_tls *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (!ssl || !SSL_set_fd(ssl, fd)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

/* After a fatal error: no close_notify may follow, and the queue is emptied.
 * Returns -1 with errno EPROTO. */
static int fatal(SSL *ssl, const char *during)
{
    if (sd_log_get_level() <= SD_LOG_DEBUG) {
        unsigned long e = ERR_peek_error();
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        sd_debug("tls %s failed: %s", during, why ? why : "connection error");
    }
    ERR_clear_error();
    SSL_set_quiet_shutdown(ssl, 1);
    errno = EPROTO;
    return -1;
}

/* Maps a non-positive SSL_* result: 0 for a clean close, -1 with errno
 * EAGAIN (and *want) when the call must be retried, -1 EPROTO on failure. */
static int outcome(SSL *ssl, int ret, int *want, const char *during)
{
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = SD_TLS_WANT_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = SD_TLS_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return fatal(ssl, during);
    }
}

int sd_tls_handshake(SSL *ssl, int *want)
{
    int ret = SSL_do_handshake(ssl);
    if (ret == 1)
        return 1;
    int rc = outcome(ssl, ret, want, "handshake");
    if (rc == -1 && errno == EAGAIN)
        return 0;
    if (rc == 0) /* close_notify before the handshake ended */
        SSL_set_quiet_shutdown(ssl, 1);
    return -1;
}

ssize_t sd_tls_read(SSL *ssl, void *buf, size_t n, int *want)
{
    int ret = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    return ret > 0 ? ret : outcome(ssl, ret, want, "read");
}

ssize_t sd_tls_write(SSL *ssl, const void *buf, size_t n, int *want)
{
    int ret = SSL_write(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (ret > 0)
        return ret;
    int rc = outcome(ssl, ret, want, "write");
    if (rc == 0) { /* cannot write after our own close_notify */
        errno = EPROTO;
        return -1;
    }
    return rc;
}

size_t sd_tls_pending(const SSL *ssl)
{
    return (size_t)SSL_pending(ssl);
}

char *sd_tls_peer_cn(const SSL *ssl)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return NULL;
    X509_NAME *name = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return NULL; /* none, or more than one: no identity */
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    char *cn = NULL;
    if (len > 0) {
        bool clean = true;
        for (int k = 0; k < len; k++)
            if (utf8[k] <= 0x20 || utf8[k] == 0x7f)
                clean = false; /* NUL, control bytes or spaces: not a key-file name */
        cn = clean ? strndup((const char *)utf8, (size_t)len) : NULL;
    }
    OPENSSL_free(utf8);
    ERR_clear_error();
    return cn;
}

void sd_tls_close(SSL *ssl, bool notify)
{
    if (!ssl)
        return;
    if (notify && SSL_is_init_finished(ssl)) {
        SSL_shutdown(ssl); /* one close_notify; the peer's is not awaited */
        ERR_clear_error();
    }
    SSL_free(ssl);
}
