/*
 * fault.c - store faults for tests (see fault.h).
 */
#include "store/fault.h"
#include "util/err.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { F_NONE, F_FAIL, F_BUSY, F_STALL };

static struct {
    int action;
    int stall_ms;
    _Atomic long left; /* calls still to fault; -1: all */
} faults[SD_OP_COUNT];

static char gate[4096];

const char *sd_fault_gate(void)
{
    return gate[0] ? gate : NULL;
}

bool sd_fault_gate_closed(void)
{
    return gate[0] && access(gate, F_OK) == 0;
}

int sd_fault_load(const char *spec, char *err, size_t errlen)
{
    memset(faults, 0, sizeof faults);
    const char *g = getenv("SESSIOND_WRITER_GATE");
    snprintf(gate, sizeof gate, "%s", g ? g : "");
    if (!spec || !*spec)
        return 0;
    char *copy = strdup(spec), *save = NULL;
    if (!copy)
        return SD_ENOMEM;
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        int op = -1;
        if (eq) {
            *eq = '\0';
            for (int i = 0; i < SD_OP_COUNT; i++)
                if (strcmp(item, sd_metrics_store_op_name((enum sd_store_op)i)) == 0)
                    op = i;
        }
        if (op < 0) {
            snprintf(err, errlen, "store faults: unknown operation in '%s'", item);
            rc = SD_EINVALID;
            break;
        }
        char *act = eq + 1, *star = strchr(act, '*');
        long count = -1;
        if (star) {
            *star = '\0';
            char *end;
            count = strtol(star + 1, &end, 10);
            if (*end || count <= 0)
                count = 0;
        }
        int ms = 0;
        int a = strcmp(act, "fail") == 0                                     ? F_FAIL
                : strcmp(act, "busy") == 0                                   ? F_BUSY
                : sscanf(act, "stall:%d", &ms) == 1 && ms > 0 && ms <= 60000 ? F_STALL
                                                                             : F_NONE;
        if (a == F_NONE || count == 0) {
            snprintf(err, errlen, "store faults: expected fail, busy or stall:MS[*COUNT] in '%s'",
                     act);
            rc = SD_EINVALID;
            break;
        }
        faults[op].action = a;
        faults[op].stall_ms = ms;
        atomic_store(&faults[op].left, count);
    }
    free(copy);
    return rc;
}

int sd_fault_check(enum sd_store_op op)
{
    if (op >= SD_OP_COUNT || faults[op].action == F_NONE)
        return 0;
    long left = atomic_load(&faults[op].left);
    do {
        if (left == 0)
            return 0;
    } while (left > 0 && !atomic_compare_exchange_weak(&faults[op].left, &left, left - 1));
    switch (faults[op].action) {
    case F_FAIL:
        return SD_EUNAVAILABLE;
    case F_BUSY:
        return SD_EBUSY;
    default: {
        struct timespec ts = {faults[op].stall_ms / 1000, (faults[op].stall_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
        return 0;
    }
    }
}
