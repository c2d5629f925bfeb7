/*
 * fuzz_props.h - what the fuzz targets check of any input, whatever the hub
 * protocol: must (a property that fails aborts, naming it) and rewrite
 * (whatever the reader accepts, the writer writes back, and that reads
 * back to the same message: write -> parse -> write is stable).
 * Header-only: a target includes it once (libFuzzer builds too).
 */
#ifndef SR_TEST_FUZZ_PROPS_H
#define SR_TEST_FUZZ_PROPS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static void must(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "property violated: %s\n", what);
        abort();
    }
}

/* Anything p read must write back, and re-read to the same bytes. */
static void rewrite(const sr_protocol *p, const sr_msg *m)
{
    sr_buf a = SR_BUF_INIT, b = SR_BUF_INIT;
    sr_msg back;
    sr_error err;
    int n;

    must(p->write(m, &a, &err) == SR_OK, "a parsed message writes back");
    n = p->parse(a.data, a.len, 0, &back, &err);
    must(n == (int)a.len, "written message parses whole");
    must(back.type == m->type, "the type survives");
    must(p->write(&back, &b, &err) == SR_OK, "re-read message writes");
    must(a.len == b.len && memcmp(a.data, b.data, a.len) == 0, "write/parse/write is stable");
    sr__msg_clear(&back);
    sr__buf_free(&a);
    sr__buf_free(&b);
}

#endif
