/* Bare-metal environment types for the C firmware. */
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
typedef uint8_t LOCK_STATIC_CONTEXT;
typedef struct
{
    volatile uint32_t head, tail;
    uint32_t length, element_size;
    uint8_t *storage;
} rpmsg_static_queue_ctxt;
#endif
#endif
