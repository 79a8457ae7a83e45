/*
 * crypto_init.h - OpenSSL's lazy set-up made to happen first. OpenSSL 3.0
 * creates its default library context, providers and method stores on
 * first use; a failed allocation there leaves a context without its lock
 * that the next call crashes on (get_default_context in crypto/context.c
 * returns the half-made context). Done first in main, such a failure can
 * only happen before sessiond holds anything, and the allocation-failure
 * sweep (util/allocfail.h) counts from after it.
 */
#ifndef SD_CRYPTO_INIT_H
#define SD_CRYPTO_INIT_H

/* 0, or -1 when OpenSSL reported a failure (out of memory, or its
 * configuration file). */
int sd_crypto_init(void);

#endif
