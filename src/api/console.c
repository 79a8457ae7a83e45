/* console.c - serves the web pages compiled into the binary (api/console.h):
 * the operator console (GET /console redirects to /console/, which is
 * index.html; GET /console/<file> is a file of console/) and the
 * self-service page the same way at /account/ (account/; it also loads the
 * console's shared modules and stylesheet from /console/). The files hold
 * no data (the console fetches everything with the caller's key, the
 * account page with the user's session cookie or token), so these routes
 * are public. Every answer carries a strict Content-Security-Policy: the
 * pages run only their own scripts and styles and talk only to this origin. */
#include "api/api.h"
#include "api/console.h"

#include <stdio.h>
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

const sd_console_asset *sd_console_find(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    for (int i = 0; i < sd_console_nassets; i++) {
        const char *a = sd_console_assets[i].name;
        if (strncmp(a, dir, n) == 0 && a[n] == '/' && strcmp(a + n + 1, name) == 0)
            return &sd_console_assets[i];
    }
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

static void serve(sd_req *r, const char *dir, const char *name)
{
    const sd_console_asset *a = sd_console_find(dir, name);
    const char *type = a ? sd_console_type(a->name) : NULL;
    if (!a || !type) {
        sd_reply_problem(r, 404, "the %s has no file named '%.64s' (try /%s/)",
                         strcmp(dir, "console") == 0 ? "console" : "self-service page", name, dir);
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

/* 301 from /<dir> to /<dir>/. */
static void redirect(sd_req *r, const char *dir)
{
    char location[32], text[64];
    snprintf(location, sizeof location, "/%s/", dir);
    int n = snprintf(text, sizeof text, "The page is at %s\n", location);
    const char *headers[] = {"Location", location, NULL};
    char *body = malloc((size_t)n);
    if (!body) {
        sd_reply_problem(r, 503, "the server is out of memory");
        return;
    }
    memcpy(body, text, (size_t)n);
    sd_reply(r, 301, "text/plain; charset=utf-8", body, (size_t)n, headers);
}

void sd_api_console_redirect(sd_req *r, void *app)
{
    (void)app;
    redirect(r, "console");
}

void sd_api_console_index(sd_req *r, void *app)
{
    (void)app;
    serve(r, "console", "index.html");
}

void sd_api_console_asset(sd_req *r, void *app)
{
    (void)app;
    serve(r, "console", sd_req_capture(r, 0));
}

void sd_api_account_redirect(sd_req *r, void *app)
{
    (void)app;
    redirect(r, "account");
}

void sd_api_account_index(sd_req *r, void *app)
{
    (void)app;
    serve(r, "account", "index.html");
}

void sd_api_account_asset(sd_req *r, void *app)
{
    (void)app;
    serve(r, "account", sd_req_capture(r, 0));
}
