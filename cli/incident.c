/*
 * incident.c - sessionctl's incident response (admin scope): `not-before`
 * (show, or sign out every session created before a time) and
 * `revoke-matching` (the sessions of a network or a device). Each
 * revocation of many asks for --yes: there is no undo.
 */
#include "cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int cmd_not_before(cli *x)
{
    if (x->nargs > 1)
        return cli_usage_error("expected nothing (show) or one TIME: sessionctl not-before "
                               "[TIME|now --yes]");
    char *value = NULL;
    int64_t n = 0;
    int rc;
    if (x->nargs == 0) {
        if ((rc = sd_client_not_before(x->c, &value)))
            return cli_fail(x, "not-before", rc);
    } else {
        if (!x->yes)
            return cli_usage_error("not-before %s signs out every session created before it, "
                                   "on every replica, with no undo: add --yes",
                                   x->args[0]);
        if ((rc = sd_client_set_not_before(x->c, x->args[0], &value, &n)))
            return cli_fail(x, "not-before", rc);
    }
    if (x->json) {
        json_t *o = json_pack("{s:s?}", "notBefore", value);
        if (x->nargs)
            json_object_set_new(o, "sessionsInvalidated", json_integer(n));
        cli_print_json(o);
    } else {
        fputs("not-before: ", stdout);
        print_safe(stdout, value ? value : "none");
        if (x->nargs)
            printf(" (%lld active session%s invalidated)", (long long)n, n == 1 ? "" : "s");
        fputc('\n', stdout);
    }
    sd_client_free(value);
    return EXIT_OK;
}

int cmd_revoke_matching(cli *x)
{
    if (cli_need_args(x, 0, "no operand: sessionctl revoke-matching --network CIDR | --device ID"))
        return EXIT_USAGE;
    if (!x->network == !x->device)
        return cli_usage_error("revoke-matching takes one of --network CIDR and --device ID");
    if (!x->dry_run && !x->yes)
        return cli_usage_error("revoke-matching ends every matching session with no undo: add "
                               "--yes (or count them first with --dry-run)");
    int64_t n = 0;
    const char *what = x->network ? x->network : x->device;
    int rc = sd_client_revoke_matching(x->c, x->network, x->device, x->dry_run, &n);
    if (rc)
        return cli_fail(x, what, rc);
    if (x->json) {
        cli_print_json(json_pack("{s:s, s:I}", x->network ? "network" : "deviceId", what,
                                 x->dry_run ? "matching" : "revoked", (json_int_t)n));
    } else {
        printf("%s %lld session%s %s ", x->dry_run ? "would revoke" : "revoked", (long long)n,
               n == 1 ? "" : "s", x->network ? "from network" : "of device");
        print_safe(stdout, what);
        fputc('\n', stdout);
    }
    return EXIT_OK;
}
