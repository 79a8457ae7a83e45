/*
 * tls.h - native TLS for the HTTP server (OpenSSL): the server context, its
 * reload, and the non-blocking record-layer calls server.c makes in place
 * of recv() and send() on a TLS connection.
 *
 * Policy: TLS 1.2 and 1.3 only, Mozilla's "intermediate" profile (TLS 1.2:
 * ECDHE/DHE with AES-GCM or ChaCha20-Poly1305; TLS 1.3: OpenSSL's default
 * suites; groups X25519, P-256, P-384), the client's cipher preference, no
 * compression, no renegotiation, session tickets on.
 *
 * A context (sd_tls) holds the current SSL_CTX. sd_tls_reload() builds a new
 * one from the files; new connections use it, live connections keep the one
 * they started with (SSL_CTX is reference-counted). With a client CA, peers
 * are asked for a certificate (mTLS) and one that does not verify fails the
 * handshake; with client_auth_required a peer without one fails too.
 */
#ifndef SD_HTTP_TLS_H
#define SD_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st; /* OpenSSL's SSL, kept out of server.c */
typedef struct sd_tls sd_tls;

typedef struct sd_tls_options {
    const char *cert_file;      /* PEM chain, leaf first */
    const char *key_file;       /* PEM private key */
    const char *client_ca_file; /* PEM CA(s) for client certificates; NULL or "": no mTLS */
    bool client_auth_required;  /* mTLS: a peer without a certificate fails the handshake */
} sd_tls_options;

/* Loads the files into a new context. Returns 0, or SD_ECONFIG with a
 * sentence (which file, OpenSSL's reason) in err. */
int sd_tls_create(const sd_tls_options *opt, sd_tls **out, char *err, size_t errlen);

/* Builds a new SSL_CTX from opt and makes it current; on failure the old one
 * stays and err says why. Safe while the server runs (any thread). */
int sd_tls_reload(sd_tls *t, const sd_tls_options *opt, char *err, size_t errlen);

/* Frees the context; connections still open keep their SSL_CTX alive. */
void sd_tls_free(sd_tls *t);

/* ---- per connection (on its loop thread) -------------------------------- */

/* What a TLS call that could not finish waits for. */
enum { SD_TLS_WANT_READ = 1, SD_TLS_WANT_WRITE = 2 };

/* A server-side SSL for an accepted non-blocking socket, or NULL. */
struct ssl_st *sd_tls_accept(sd_tls *t, int fd);

/* Advances the handshake: 1 done, 0 not yet (*want says on what), -1 failed
 * (the caller closes; nothing was logged above debug). */
int sd_tls_handshake(struct ssl_st *ssl, int *want);

/* As recv()/send(): bytes moved (> 0); 0 when the peer closed (read only);
 * -1 with errno EAGAIN when the record layer waits (*want says on what), or
 * errno EPROTO (fatal: close). */
ssize_t sd_tls_read(struct ssl_st *ssl, void *buf, size_t n, int *want);
ssize_t sd_tls_write(struct ssl_st *ssl, const void *buf, size_t n, int *want);

/* Decrypted bytes already buffered inside the SSL object (no epoll event
 * will announce them). */
size_t sd_tls_pending(const struct ssl_st *ssl);

/* The verified client certificate's subject CN as a new string, or NULL
 * (no certificate, no or an ambiguous CN, or a CN with a NUL or a control
 * byte). Call after the handshake; the caller frees. */
char *sd_tls_peer_cn(const struct ssl_st *ssl);

/* Sends close_notify when the connection is healthy (without waiting for the
 * peer's) and frees the SSL; does not close the socket. */
void sd_tls_close(struct ssl_st *ssl, bool notify);

#endif
