/* value_equal.h - deep, bit-exact comparison of two sr_values for the C
 * unit tests (floats compare by bits, map keys in order). */
#ifndef SR_TEST_VALUE_EQUAL_H
#define SR_TEST_VALUE_EQUAL_H

#include "signalr.h"
#include <string.h>

static int equal(const sr_value *a, const sr_value *b)
{
    size_t i, la, lb;
    const char *sa, *sb;

    if (sr_value_type(a) != sr_value_type(b)) return 0;
    switch (sr_value_type(a)) {
    case SR_NULL:
        return 1;
    case SR_BOOL:
        return sr_value_get_bool(a) == sr_value_get_bool(b);
    case SR_INT:
        return sr_value_get_int(a) == sr_value_get_int(b);
    case SR_FLOAT: {
        double x = sr_value_get_float(a), y = sr_value_get_float(b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case SR_STRING:
    case SR_BINARY:
        sa = sr_value_get_string(a, &la);
        sb = sr_value_get_string(b, &lb);
        return la == lb && memcmp(sa, sb, la) == 0;
    case SR_ARRAY:
    case SR_MAP:
        if (sr_value_len(a) != sr_value_len(b)) return 0;
        for (i = 0; i < sr_value_len(a); i++) {
            if (sr_value_type(a) == SR_MAP) {
                sa = sr_value_key_at(a, i, &la);
                sb = sr_value_key_at(b, i, &lb);
                if (la != lb || memcmp(sa, sb, la) != 0) return 0;
            }
            if (!equal(sr_value_at(a, i), sr_value_at(b, i))) return 0;
        }
        return 1;
    }
    return 0;
}

#endif
