/* rpmsg-c: the environment layer interface. These functions are the project's (its
 * rpmsg_env_bm.c, FreeRTOS, Zephyr, ... file, unchanged from RPMsg-Lite); this header declares
 * them with RPMsg-Lite's signatures so those files build against rpmsg-c as they are.
 *
 * What the library itself calls, and when:
 *   env_init / env_deinit                  at instance init / deinit
 *   env_create_mutex / env_delete_mutex    one mutex per instance, at init / deinit
 *   env_lock_mutex / env_unlock_mutex      around every call into the link from task context
 *                                          (not when platform_in_isr() says interrupt context)
 *   env_disable_interrupt / env_enable_interrupt
 *                                          around the link's bookkeeping, for the vectors of
 *                                          every live instance (the interrupt path's lock)
 *   env_sleep_msec(RL_MS_PER_INTERVAL)     every step of a wait (send, alloc, announce)
 *   env_map_vatopa / env_map_patova        address translation of ring descriptors
 *   env_cache_flush / env_cache_invalidate around shared-memory accesses
 *   env_wait_for_link_up / env_tx_callback rpmsg_lite_wait_for_link_up / link-up seen
 *   env_allocate_memory / env_free_memory  contexts of the dynamic API (glue file)
 *   env_create_queue, env_put_queue, env_get_queue, env_delete_queue,
 *   env_get_current_queue_size             the rpmsg_queue API (glue file)
 * The interrupt path (env_isr in rpmsg_env_bm.c and its equivalents) calls
 * virtqueue_notification (virtqueue.h). Environment contexts (RL_USE_ENVIRONMENT_CONTEXT 1)
 * are not supported. Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_ENV_H_
#define RPMSG_ENV_H_

#include <stdint.h>
#include "rpmsg_default_config.h"
#include "rpmsg_env_specific.h"
#include "rpmsg_platform.h"

#if defined(RL_USE_ENVIRONMENT_CONTEXT) && (RL_USE_ENVIRONMENT_CONTEXT == 1)
#error "rpmsg-c does not support RL_USE_ENVIRONMENT_CONTEXT"
#endif

int32_t env_init(void);
int32_t env_deinit(void);

void *env_allocate_memory(uint32_t size);
void env_free_memory(void *ptr);

void env_memset(void *ptr, int32_t value, uint32_t size);
void env_memcpy(void *dst, void const *src, uint32_t len);
int32_t env_strcmp(const char *dst, const char *src);
void env_strncpy(char *dest, const char *src, uint32_t len);
int32_t env_strncmp(char *dest, const char *src, uint32_t len);

#ifdef MCUXPRESSO_SDK
#include "fsl_debug_console.h"
#if defined SDK_DEBUGCONSOLE && (SDK_DEBUGCONSOLE != DEBUGCONSOLE_DISABLE)
#define env_print(...) (void)PRINTF(__VA_ARGS__)
#else
#define env_print(...)
#endif
#else
#include <stdio.h>
#define env_print(...) (void)printf(__VA_ARGS__)
#endif

uint32_t env_map_vatopa(void *address);
void *env_map_patova(uint32_t address);

void env_mb(void);
void env_rmb(void);
void env_wmb(void);

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
int32_t env_create_mutex(void **lock, int32_t count, void *context);
#else
int32_t env_create_mutex(void **lock, int32_t count);
#endif
void env_delete_mutex(void *lock);
void env_lock_mutex(void *lock);
void env_unlock_mutex(void *lock);

#define LOCKED   0
#define UNLOCKED 1
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
int32_t env_create_sync_lock(void **lock, int32_t state, void *context);
#else
int32_t env_create_sync_lock(void **lock, int32_t state);
#endif
void env_delete_sync_lock(void *lock);
void env_acquire_sync_lock(void *lock);
void env_release_sync_lock(void *lock);

void env_sleep_msec(uint32_t num_msec);

void env_register_isr(uint32_t vector_id, void *data);
void env_unregister_isr(uint32_t vector_id);
void env_enable_interrupt(uint32_t vector_id);
void env_disable_interrupt(uint32_t vector_id);

#define UNCACHED   (1 << 0)
#define WB_CACHE   (1 << 1)
#define WT_CACHE   (1 << 2)
#define MEM_MAPPED (1 << 4)
#define IO_MAPPED  (1 << 5)
#define SHARED_MEM (1 << 6)
#define TLB_MEM    (1 << 7)
void env_map_memory(uint32_t pa, uint32_t va, uint32_t size, uint32_t flags);
uint64_t env_get_timestamp(void);
void env_disable_cache(void);
void env_cache_flush(void *data, uint32_t len);
void env_cache_invalidate(void *data, uint32_t len);

typedef void LOCK;

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
int32_t env_create_queue(void **queue,
                         int32_t length,
                         int32_t element_size,
                         uint8_t *queue_static_storage,
                         rpmsg_static_queue_ctxt *queue_static_context);
#else
int32_t env_create_queue(void **queue, int32_t length, int32_t element_size);
#endif
void env_delete_queue(void *queue);
int32_t env_put_queue(void *queue, void *msg, uintptr_t timeout_ms);
int32_t env_get_queue(void *queue, void *msg, uintptr_t timeout_ms);
int32_t env_get_current_queue_size(void *queue);

void env_isr(uint32_t vector);

uint32_t env_wait_for_link_up(volatile uint32_t *link_state, uint32_t link_id, uint32_t timeout_ms);
void env_tx_callback(uint32_t link_id);

#endif /* RPMSG_ENV_H_ */
