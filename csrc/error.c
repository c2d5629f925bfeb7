/*
 * error.c - names for error codes and connection states, and filling an
 * sr_error (error.h).
 *
 * sr_strerror returns the error "kind" of the Lua API (API.md, Errors), so the
 * binding can use it as is. That list has no kind for resource exhaustion:
 * SR_ENOMEM and SR_EFULL (a bounded buffer is full) are reported as
 * "transport", the kind a caller already handles for "the message could not
 * be sent/received"; the message text says what actually happened.
 */
#include <stdio.h>

#include "error.h"

const char *sr_strerror(int code)
{
    switch (code) {
    case SR_OK:
        return "ok";
    case SR_EHUB:
        return "hub";
    case SR_ECLOSED:
        return "closed";
    case SR_ETIMEOUT:
        return "timeout";
    case SR_ECANCELED:
        return "canceled";
    case SR_ENEGOTIATE:
        return "negotiate";
    case SR_EHANDSHAKE:
        return "handshake";
    case SR_ETRANSPORT:
    case SR_ENOMEM:
    case SR_EFULL:
        return "transport";
    case SR_EPROTOCOL:
        return "protocol";
    case SR_EUSAGE:
        return "usage";
    default:
        return "unknown";
    }
}

const char *sr_state_name(sr_state s)
{
    switch (s) {
    case SR_STATE_DISCONNECTED:
        return "disconnected";
    case SR_STATE_CONNECTING:
        return "connecting";
    case SR_STATE_CONNECTED:
        return "connected";
    case SR_STATE_RECONNECTING:
        return "reconnecting";
    case SR_STATE_DISCONNECTING:
        return "disconnecting";
    }
    return "unknown";
}

int sr__error_vset(sr_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        err->status = 0;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return code;
}

int sr__error_set(sr_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sr__error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}
