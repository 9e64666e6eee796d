/* The test environment's types (a bare-metal style environment on a Linux host). */
#ifndef RPMSG_ENV_SPECIFIC_H_
#define RPMSG_ENV_SPECIFIC_H_
#include <stdint.h>
#include "rpmsg_default_config.h"

typedef struct
{
    uint32_t src;
    void *data;
    uint32_t len;
} rpmsg_queue_rx_cb_data_t;

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
/* A mutex and a queue header live in the caller's static storage. */
typedef struct
{
    uint32_t locked;
    uint32_t magic;
} LOCK_STATIC_CONTEXT;
typedef struct
{
    uint32_t head, tail, length, element_size;
    uint8_t *storage;
} rpmsg_static_queue_ctxt;
#endif
#endif
