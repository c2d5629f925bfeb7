/*
 * log.h - the logger a connection carries: a sink, its context and a level.
 * Formatting happens only when the level is enabled, so disabled trace
 * logging costs one comparison.
 */
#ifndef SR_LOG_H
#define SR_LOG_H

#include "signalr.h"

typedef struct sr_logger {
    sr_log_fn fn;
    void *ud;
    sr_log_level level;
} sr_logger;

#define SR_LOG_ON(lg, lvl) ((lg)->fn && (lvl) >= (lg)->level && (lg)->level != SR_LOG_NONE)

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void sr__logf(const sr_logger *lg, sr_log_level level, const char *fmt, ...);

#endif
