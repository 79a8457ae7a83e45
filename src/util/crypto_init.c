/*
 * crypto_init.c - OpenSSL's lazy set-up made to happen first (see
 * crypto_init.h): every algorithm family sessiond uses is fetched once,
 * and the decoders are set up. No randomness is drawn.
 */
#include "util/crypto_init.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

int sd_crypto_init(void)
{
    if (!OPENSSL_init_crypto(OPENSSL_INIT_ADD_ALL_CIPHERS | OPENSSL_INIT_ADD_ALL_DIGESTS, NULL))
        return -1;
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    EVP_CIPHER *aead = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_PKEY_CTX *ed = EVP_PKEY_CTX_new_from_name(NULL, "ED25519", NULL);
    EVP_PKEY_CTX *ec = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    /* The decoders (--jwt-keys are DER): their stores are set up before a
     * byte is looked at, so a few that are no key do. */
    static const unsigned char junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    const unsigned char *p = junk;
    EVP_PKEY_free(d2i_AutoPrivateKey(NULL, &p, sizeof junk));
    ERR_clear_error(); /* that failure is no one's business */
    int rc = md && aead && mac && ed && ec ? 0 : -1;
    EVP_PKEY_CTX_free(ec);
    EVP_PKEY_CTX_free(ed);
    EVP_MAC_free(mac);
    EVP_CIPHER_free(aead);
    EVP_MD_free(md);
    return rc;
}
