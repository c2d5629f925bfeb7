/* log.c - formats a log line and hands it to the connection's sink. */
#include "log.h"
#include <stdarg.h>
#include <stdio.h>

void sr__logf(const sr_logger *lg, sr_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    if (!SR_LOG_ON(lg, level)) return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    lg->fn(lg->ud, level, line);
}
