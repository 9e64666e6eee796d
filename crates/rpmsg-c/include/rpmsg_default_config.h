/* rpmsg-c: configuration defaults. The project's own rpmsg_config.h is read first (as with
 * RPMsg-Lite, set RL_USE_CUSTOM_CONFIG to 0 to do without one); every option it leaves out
 * takes the value below. The values reach the library at run time through the glue file
 * (src/c/rpmsg_c_glue.c), which is compiled with this header, so a project keeps its config.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_DEFAULT_CONFIG_H_
#define RPMSG_DEFAULT_CONFIG_H_

#ifndef RL_USE_CUSTOM_CONFIG
#define RL_USE_CUSTOM_CONFIG (1)
#endif
#if RL_USE_CUSTOM_CONFIG
#include "rpmsg_config.h"
#endif

/* Milliseconds per step of every timeout: waits sleep this long with env_sleep_msec between
 * looks, and a timeout of T ms is T / RL_MS_PER_INTERVAL such steps. */
#ifndef RL_MS_PER_INTERVAL
#define RL_MS_PER_INTERVAL (1)
#endif

/* 1: the geometry of each link comes from platform_get_custom_shmem_config(). */
#ifndef RL_ALLOW_CUSTOM_SHMEM_CONFIG
#define RL_ALLOW_CUSTOM_SHMEM_CONFIG (0)
#endif

#if !(defined(RL_ALLOW_CUSTOM_SHMEM_CONFIG) && (RL_ALLOW_CUSTOM_SHMEM_CONFIG == 1))
/* Payload bytes per buffer; a buffer is this plus the 16-byte header, rounded up to 4.
 * Both sides must agree. */
#ifndef RL_BUFFER_PAYLOAD_SIZE
#define RL_BUFFER_PAYLOAD_SIZE (496U)
#endif
/* Buffers per direction, a power of two; also each vring's size. Both sides must agree. */
#ifndef RL_BUFFER_COUNT
#define RL_BUFFER_COUNT (2U)
#endif
#endif

/* 1: rpmsg_lite_alloc_tx_buffer, rpmsg_lite_send_nocopy, rpmsg_lite_release_rx_buffer and the
 * rpmsg_queue API are declared. The library always provides them. */
#ifndef RL_API_HAS_ZEROCOPY
#define RL_API_HAS_ZEROCOPY (1)
#endif

/* 1: the caller provides every context (instance, endpoint, name service, queue) and nothing
 * is allocated; 0: contexts come from env_allocate_memory. */
#ifndef RL_USE_STATIC_API
#define RL_USE_STATIC_API (0)
#endif

/* Accepted for compatibility; the library never leaves payload bytes behind on purpose but
 * does not clear buffers (0 is RPMsg-Lite's default too). */
#ifndef RL_CLEAR_USED_BUFFERS
#define RL_CLEAR_USED_BUFFERS (0)
#endif

/* 1: env_cache_flush / env_cache_invalidate are called around shared-memory accesses. The
 * library always calls them; an environment without caches makes them empty. */
#ifndef RL_USE_DCACHE
#define RL_USE_DCACHE (0)
#endif

#ifndef RL_USE_MCMGR_IPC_ISR_HANDLER
#define RL_USE_MCMGR_IPC_ISR_HANDLER (0)
#endif

/* Environment contexts (env_init(void **, void *)) are not supported by rpmsg-c: the glue
 * file stops the build when this is 1. */
#ifndef RL_USE_ENVIRONMENT_CONTEXT
#define RL_USE_ENVIRONMENT_CONTEXT (0)
#endif

/* Accepted for compatibility: rpmsg-c always checks that a buffer given back is one of this
 * instance's (RL_ERR_PARAM otherwise). */
#ifndef RL_DEBUG_CHECK_BUFFERS
#define RL_DEBUG_CHECK_BUFFERS (0)
#endif

#ifndef RL_ALLOW_CONSUMED_BUFFERS_NOTIFICATION
#define RL_ALLOW_CONSUMED_BUFFERS_NOTIFICATION (0)
#endif

__attribute__((noreturn)) static inline void RL_HANG(void)
{
    for (;;)
    {
    }
}

#ifndef RL_ASSERT
#define RL_ASSERT_BOOL(b) \
    do                    \
    {                     \
        if (!(b))         \
        {                 \
            RL_HANG();    \
        }                 \
    } while (0 == 1);
#define RL_ASSERT(x) RL_ASSERT_BOOL((int32_t)(x) != 0)
#endif

#endif /* RPMSG_DEFAULT_CONFIG_H_ */
