/*
 * error.h - filling an sr_error inside the core (error.c): the one helper
 * modules report a failure with, so every sr_error is set the same way.
 */
#ifndef SR_ERROR_H
#define SR_ERROR_H

#include <stdarg.h>

#include "signalr.h"

#if defined(__GNUC__)
#define SR_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define SR_PRINTF_LIKE(f, a)
#endif

/* Fill err (code, status 0, the formatted message) when it is not NULL;
 * return code. */
int sr__error_set(sr_error *err, int code, const char *fmt, ...) SR_PRINTF_LIKE(3, 4);
int sr__error_vset(sr_error *err, int code, const char *fmt, va_list ap);

#endif
