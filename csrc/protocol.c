/*
 * protocol.c - what the hub protocols share: finding one by its handshake
 * name, and freeing a parsed message.
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
    if (!m) return;
    free(m->invocation_id);
    free(m->target);
    sr_value_free(m->arguments);
    sr_value_free(m->stream_ids);
    sr_value_free(m->headers);
    sr_value_free(m->item);
    sr_value_free(m->result);
    free(m->error);
    memset(m, 0, sizeof *m);
}
