/*
 * status.h - the reason phrase of each HTTP status code: the text after the
 * code on the status line, and the title of a problem+json body of type
 * about:blank (RFC 9457 section 4.2.1: the status code's phrase).
 */
#ifndef SD_HTTP_STATUS_H
#define SD_HTTP_STATUS_H

/* The phrase RFC 9110 (section 15) or RFC 6585 gives status, as a static
 * string; NULL for a code neither registers. */
const char *sd_http_reason(int status);

/* The same, or for an unregistered code the name of its class ("Client
 * Error" for 4xx, RFC 9110 section 15); never NULL. */
const char *sd_http_reason_or_class(int status);

#endif
