/*
 * utf8.h - strict UTF-8 decoding, one character at a time: what the
 * identifier rule (session.c) and the logger's escaping (log.c) agree on.
 */
#ifndef SD_UTF8_H
#define SD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the character at p (n >= 1 bytes readable) into *c. Returns its
 * length in bytes (1-4), or 0 when p does not start a valid UTF-8 sequence:
 * a stray continuation byte, a truncated or overlong sequence, a surrogate
 * (U+D800-U+DFFF), or past U+10FFFF. *c is untouched on 0. */
size_t sd_utf8_next(const unsigned char *p, size_t n, uint32_t *c);

/* Whether all n bytes of s are valid UTF-8 (as sd_utf8_next decodes it). */
bool sd_utf8_valid(const char *s, size_t n);

#endif
