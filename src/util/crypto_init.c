/*
 * crypto_init.c - OpenSSL's lazy set-up made to happen first (see
 * crypto_init.h): every algorithm family sessiond uses is fetched once,
 * and a key goes through the encoders and decoders.
 */
#include "util/crypto_init.h"

#include <openssl/crypto.h>
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
    /* The encoders and decoders (--jwt-keys are DER): a key out and back. */
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *back = NULL;
    unsigned char *der = NULL;
    int n = k ? i2d_PrivateKey(k, &der) : 0;
    const unsigned char *p = der;
    if (n > 0)
        back = d2i_AutoPrivateKey(NULL, &p, n);
    int rc = md && aead && mac && ed && ec && back ? 0 : -1;
    EVP_PKEY_free(back);
    OPENSSL_clear_free(der, n > 0 ? (size_t)n : 0);
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ec);
    EVP_PKEY_CTX_free(ed);
    EVP_MAC_free(mac);
    EVP_CIPHER_free(aead);
    EVP_MD_free(md);
    return rc;
}
