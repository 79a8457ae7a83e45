/* console.c - serves the operator console: GET /console redirects to
 * /console/, which is index.html; GET /console/<file> is one of the files
 * compiled in from console/ (api/console.h). The files hold no data (the
 * page fetches everything with the caller's key), so these routes are
 * public. Every answer carries a strict Content-Security-Policy: the page
 * runs only its own scripts and styles and talks only to this origin. */
#include "api/api.h"
#include "api/console.h"

#include <stdlib.h>
#include <string.h>

#define CONSOLE_CSP                                                                                \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

static const char *const console_headers[] = {"Content-Security-Policy",
                                              CONSOLE_CSP,
                                              "X-Frame-Options",
                                              "DENY",
                                              "Referrer-Policy",
                                              "no-referrer",
                                              "Cross-Origin-Opener-Policy",
                                              "same-origin",
                                              NULL};

const sd_console_asset *sd_console_find(const char *name)
{
    for (int i = 0; i < sd_console_nassets; i++)
        if (strcmp(sd_console_assets[i].name, name) == 0)
            return &sd_console_assets[i];
    return NULL;
}

const char *sd_console_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".json", "application/json"},         {".png", "image/png"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

static void serve(sd_req *r, const char *name)
{
    const sd_console_asset *a = sd_console_find(name);
    const char *type = a ? sd_console_type(a->name) : NULL;
    if (!a || !type) {
        sd_reply_problem(r, 404, "the console has no file named '%.64s' (try /console/)", name);
        return;
    }
    char *body = malloc(a->len);
    if (!body) {
        sd_reply_problem(r, 503, "the server is out of memory");
        return;
    }
    memcpy(body, a->data, a->len);
    sd_reply(r, 200, type, body, a->len, console_headers);
}

void sd_api_console_redirect(sd_req *r, void *app)
{
    (void)app;
    static const char *const headers[] = {"Location", "/console/", NULL};
    static const char text[] = "The console is at /console/\n";
    char *body = malloc(sizeof text - 1);
    if (!body) {
        sd_reply_problem(r, 503, "the server is out of memory");
        return;
    }
    memcpy(body, text, sizeof text - 1);
    sd_reply(r, 301, "text/plain; charset=utf-8", body, sizeof text - 1, headers);
}

void sd_api_console_index(sd_req *r, void *app)
{
    (void)app;
    serve(r, "index.html");
}

void sd_api_console_asset(sd_req *r, void *app)
{
    (void)app;
    serve(r, sd_req_capture(r, 0));
}
