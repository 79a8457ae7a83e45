/* Unit tests of util/log.c: logfmt quoting of client-chosen values, and the
 * escaping of control characters, C1 controls, separators and bytes that
 * are not UTF-8 in the written line (read back from stderr). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void quote_leaves_plain_values_alone(void **state)
{
    (void)state;
    char buf[64];
    const char *v = "alice.example-1";
    assert_ptr_equal(sd_log_quote(v, buf, sizeof buf), v);
    assert_string_equal(sd_log_quote(NULL, buf, sizeof buf), "-");
}

static void quote_keeps_a_value_one_field(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"x except=- count=999", "\"x except=- count=999\""},
        {"a=b", "\"a=b\""},
        {"", "\"\""},
        {"say \"hi\"", "\"say \\\"hi\\\"\""},
        {"back\\slash", "\"back\\\\slash\""},
        {"tab\there", "\"tab\there\""},       /* the logger escapes the tab itself */
        {"\xc3\xa9lise", "\"\xc3\xa9lise\""}, /* non-ASCII: a space may hide in it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[SD_LOG_QUOTED(64)];
        assert_string_equal(sd_log_quote(cases[i].in, buf, sizeof buf), cases[i].out);
    }
}

static void quote_cut_short_still_closes(void **state)
{
    (void)state;
    char buf[8];
    const char *q = sd_log_quote("a b c d e f g", buf, sizeof buf);
    assert_string_equal(q, "\"a b c\"");
    q = sd_log_quote("\"\"\"\"\"\"", buf, sizeof buf); /* never half an escape */
    assert_string_equal(q, "\"\\\"\\\"\"");
}

/* What sd_log writes for text, without the time and level. */
static char *logged(const char *text)
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    dup2(fileno(tmp), STDERR_FILENO);
    sd_log(SD_LOG_WARN, "%s", text);
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char line[1024];
    rewind(tmp);
    size_t n = fread(line, 1, sizeof line - 1, tmp);
    fclose(tmp);
    line[n] = '\0';
    char *p = strstr(line, " warn ");
    assert_non_null(p);
    return p + 6;
}

static void lines_escape_what_could_forge_or_drive_a_terminal(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain\n"},
        {"a\r\nb", "a\\x0d\\x0ab\n"},
        {"esc\x1b[2J", "esc\\x1b[2J\n"},
        {"del\x7f", "del\\x7f\n"},
        {"nel\xc2\x85x", "nel\\u0085x\n"},
        {"csi\xc2\x9b"
         "2J",
         "csi\\u009b2J\n"},
        {"ls\xe2\x80\xa8ps\xe2\x80\xa9", "ls\\u2028ps\\u2029\n"},
        {"bad\xff\xc0\xa0", "bad\\xff\\xc0\\xa0\n"},
        {"cut\xe2\x80", "cut\\xe2\\x80\n"},
        {"\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", "\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(logged(cases[i].in), cases[i].out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quote_leaves_plain_values_alone),
        cmocka_unit_test(quote_keeps_a_value_one_field),
        cmocka_unit_test(quote_cut_short_still_closes),
        cmocka_unit_test(lines_escape_what_could_forge_or_drive_a_terminal),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
