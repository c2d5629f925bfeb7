/*
 * protocol.c - what the hub protocols share: finding one by its handshake
 * name, freeing a parsed message, reporting a fault, naming a type, the
 * checks before writing a message.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

const sr_protocol *sr__protocol_find(const char *name)
{
    if (!name) return NULL;
    if (strcmp(name, sr__json_protocol.name) == 0) return &sr__json_protocol;
    if (strcmp(name, sr__msgpack_protocol.name) == 0) return &sr__msgpack_protocol;
    return NULL;
}

void sr__msg_clear(sr_msg *m)
{
    sr__msg_recycle(m, NULL);
}

void sr__msg_recycle(sr_msg *m, sr_arena_pool *pool)
{
    if (!m) return;
    if (m->arena) {
        sr__arena_put(pool, m->arena);
    } else {
        free(m->invocation_id);
        free(m->target);
        sr_value_free(m->arguments);
        sr_value_free(m->stream_ids);
        sr_value_free(m->headers);
        sr_value_free(m->item);
        sr_value_free(m->result);
        free(m->error);
    }
    memset(m, 0, sizeof *m);
}

int sr__proto_oom(sr_error *err)
{
    return sr__error_set(err, SR_ENOMEM, "out of memory");
}

const char *sr__msg_type_name(int t)
{
    static const char *const names[] = {
        "",     "Invocation", "StreamItem", "Completion", "StreamInvocation", "CancelInvocation",
        "Ping", "Close",      "Ack",        "Sequence"};
    return t >= 1 && t <= 9 ? names[t] : "unknown";
}

/* Writing: a field the message type requires (SR_EUSAGE naming it). */
int sr__proto_need(const sr_msg *m, const void *field, const char *name, sr_error *err)
{
    if (field) return SR_OK;
    return sr__error_set(err, SR_EUSAGE, "%s message needs %s", sr__msg_type_name(m->type), name);
}

/* Whether v is an array (or, with map, a map) of strings only: what stream
 * ids and headers must be. */
int sr__proto_all_strings(const sr_value *v, int map)
{
    size_t i, n = sr_value_len(v);

    for (i = 0; i < n; i++)
        if (sr_value_type(sr_value_at(v, i)) != SR_STRING) return 0;
    return sr_value_type(v) == (map ? SR_MAP : SR_ARRAY);
}
