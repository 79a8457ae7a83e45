/* fuzz_router.c - route matching and percent-decoding of request targets
 * over the real route table: "METHOD\0PATH". */
#include "api/api.h"
#include "http/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, 0, size);
    if (!nul)
        return 0;
    char *method = strndup((const char *)data, (size_t)(nul - (const char *)data));
    size_t plen = size - (size_t)(nul - (const char *)data) - 1;
    char *path = strndup(nul + 1, plen);
    if (method && path) {
        sd_match m;
        memset(&m, 0, sizeof m);
        sd_route_match(sd_api_routes, sd_api_nroutes, method, path, &m);
        sd_match_free(&m);
        char *dec = NULL;
        if (sd_pct_decode(path, strlen(path), &dec) == 0)
            free(dec);
    }
    free(method);
    free(path);
    return 0;
}
