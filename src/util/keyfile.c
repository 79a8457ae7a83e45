/* keyfile.c - the key id rule and the opening of key files (keyfile.h). */
#include "util/keyfile.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

bool sd_key_id_ok(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

FILE *sd_key_file_open(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open the %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        sd_warn("the %s %s can be read by others (chmod 600 it)", what, path);
    return f;
}
