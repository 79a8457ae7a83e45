/*
 * precond.c - conditional requests on a session (RFC 9110 section 13):
 * If-Match and If-None-Match read from the request, and the answers a
 * precondition gives: 412 and 304, each with the session's ETag. What a
 * precondition means is the domain's (session/precond.h); a write's is
 * evaluated by the writer, inside its transaction.
 */
#include "api/api.h"
#include "util/err.h"

int sd_api_preconds(sd_req *r, sd_precond *out)
{
    char err[128];
    if (sd_precond_parse(sd_req_header(r, "If-Match"), sd_req_header(r, "If-None-Match"), out, err,
                         sizeof err)) {
        sd_reply_problem(r, 400, "%s", err);
        return -1;
    }
    return 0;
}

void sd_api_precondition_failed(sd_req *r, int64_t version, const char *detail)
{
    char etag[SD_API_ETAG_LEN];
    sd_api_etag(version, etag);
    const char *hdr[] = {"ETag", etag, NULL};
    sd_reply_problem_with(r, 412, hdr, "%s", detail);
}

int sd_api_precond_answer(sd_req *r, const sd_precond *p, int64_t version)
{
    sd_precond_result pr = sd_precond_eval(p, version);
    if (pr == SD_PRECOND_HOLDS)
        return 0;
    if (pr == SD_PRECOND_NONE) { /* a read: not modified */
        char etag[SD_API_ETAG_LEN];
        sd_api_etag(version, etag);
        const char *hdr[] = {"ETag", etag, NULL};
        sd_reply(r, 304, NULL, NULL, 0, hdr);
        return -1;
    }
    char detail[256];
    sd_precond_detail(pr, version, detail, sizeof detail);
    sd_api_precondition_failed(r, version, detail);
    return -1;
}

void sd_api_fail_write(sd_req *r, const sd_write *w)
{
    if (w->rc == SD_ECONFLICT && w->version_found > 0)
        sd_api_precondition_failed(r, w->version_found, w->detail);
    else
        sd_api_fail(r, w->rc, w->detail);
}
