/* rpmsg-c: RPMsg-Lite 5.x's core API over the rpmsg-rs library.
 *
 * Same function names, argument types, return codes, macros and callback contracts as
 * RPMsg-Lite, in both the dynamic API and RL_USE_STATIC_API (caller-provided contexts), with
 * the zero-copy calls (RL_API_HAS_ZEROCOPY). Configuration comes from the project's
 * rpmsg_config.h through rpmsg_default_config.h.
 *
 * Build: compile src/c/rpmsg_c_glue.c (with this include directory ahead of RPMsg-Lite's and
 * the project's config, environment and platform headers on the path) in place of
 * RPMsg-Lite's rpmsg_lite.c, rpmsg_ns.c, rpmsg_queue.c, virtqueue.c and llist.c; keep the
 * environment file (rpmsg_env_bm.c, rpmsg_env_freertos.c, ...) and the platform file; link
 * librpmsg_c.a.
 *
 * Where rpmsg-c differs from RPMsg-Lite (all are checks RPMsg-Lite does not make, or limits):
 *  - Every endpoint, buffer and name-service handle passed in is looked up in the instance's
 *    own tables before use: one from another instance, a destroyed endpoint, a buffer released
 *    or sent twice, or a pointer that is no buffer gets RL_ERR_PARAM instead of corrupting
 *    the rings. A zeroed or de-initialised instance gets RL_NOT_READY / RL_ERR_PARAM / NULL.
 *  - Everything the other core writes into shared memory (ring indices, descriptor addresses
 *    and lengths, header lengths) is validated; a faulty peer makes calls fail, never makes the
 *    library read or write outside the shared memory.
 *  - rpmsg_lite_*_init on an instance that is already initialised returns RL_NULL (RPMsg-Lite
 *    would re-initialise it over live state). Call rpmsg_lite_deinit first.
 *  - The shared memory must be 8-byte aligned (RPMsg-Lite accepts any word alignment).
 *  - At most 16 endpoints per instance at once (RPMsg-Lite: unbounded list); RL_BUFFER_COUNT
 *    up to 256 on hosted targets, 16 on microcontrollers.
 *  - rpmsg_lite_alloc_tx_buffer needs at least one endpoint on the instance (RL_NULL before).
 *  - Environment contexts (RL_USE_ENVIRONMENT_CONTEXT) are not supported.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_LITE_H_
#define RPMSG_LITE_H_

#if defined(__cplusplus)
extern "C" {
#endif

#include <stddef.h>
#include <stdint.h>
#include "rpmsg_compiler.h"
#include "virtqueue.h"
#include "rpmsg_env.h"
#include "llist.h"
#include "rpmsg_default_config.h"

#define RL_VERSION "v5.4.0" /* the RPMsg-Lite API version this library provides */
#define RPMSG_C_VERSION "0.1.0"

#define RL_WORD_SIZE          (sizeof(uint32_t))
#define RL_WORD_ALIGN_UP(a)   (((uintptr_t)(a) + (RL_WORD_SIZE - 1U)) & (~((uintptr_t)(RL_WORD_SIZE - 1U))))
#define RL_WORD_ALIGN_DOWN(a) ((uintptr_t)(a) & (~((uintptr_t)(RL_WORD_SIZE - 1U))))

#define RL_SUCCESS (0)
#define RL_NULL    ((void *)0)
#define RL_REMOTE  (0)
#define RL_MASTER  (1)
#define RL_TRUE    (1UL)
#define RL_FALSE   (0UL)
#define RL_ADDR_ANY (0xFFFFFFFFU)
#define RL_RELEASE (0)
#define RL_HOLD    (1)
#define RL_DONT_BLOCK (0)
#define RL_BLOCK   (~0UL)

#define RL_ERRORS_BASE   (-5000)
#define RL_ERR_NO_MEM    (RL_ERRORS_BASE - 1) /* no buffer within the timeout */
#define RL_ERR_BUFF_SIZE (RL_ERRORS_BASE - 2) /* payload larger than a buffer */
#define RL_ERR_PARAM     (RL_ERRORS_BASE - 3) /* a bad pointer, address or length */
#define RL_ERR_DEV_ID    (RL_ERRORS_BASE - 4)
#define RL_ERR_MAX_VQ    (RL_ERRORS_BASE - 5)
#define RL_ERR_NO_BUFF   (RL_ERRORS_BASE - 6)
#define RL_NOT_READY     (RL_ERRORS_BASE - 7) /* link not up, down, or broken by the peer */
#define RL_ALREADY_DONE  (RL_ERRORS_BASE - 8)

#define RL_NO_FLAGS (0U)
/* rpmsg-c only, for rpmsg_lite_remote_init: if the master has already initialised the shared
 * memory (its kick came before this remote listened), come up at once instead of waiting for a
 * kick that will not come. Leave it out when the shared memory may still hold the rings of an
 * earlier session (a remote re-initialised while its master restarts): they look the same.
 * Without it the remote waits for the master's kick, as RPMsg-Lite's does. */
#define RL_C_LATE_REMOTE (0x100U)

struct rpmsg_hdr_reserved
{
    uint16_t rfu;
    uint16_t idx;
};

/* The 16-byte header in front of every payload in shared memory. */
RL_PACKED_BEGIN
struct rpmsg_std_hdr
{
    uint32_t src;
    uint32_t dst;
    struct rpmsg_hdr_reserved reserved;
    uint16_t len;
    uint16_t flags;
} RL_PACKED_END;

RL_PACKED_BEGIN
struct rpmsg_std_msg
{
    struct rpmsg_std_hdr hdr;
    uint8_t data[1];
} RL_PACKED_END;

/* Receive callback. Runs in the context that delivers the doorbell (the ISR calling
 * virtqueue_notification). payload points to the message in shared memory and is valid until
 * the callback returns RL_RELEASE, or, if it returns RL_HOLD, until
 * rpmsg_lite_release_rx_buffer(payload). */
typedef int32_t (*rl_ept_rx_cb_t)(void *payload, uint32_t payload_len, uint32_t src, void *priv);

struct rpmsg_lite_endpoint
{
    uint32_t addr;        /* this endpoint's address */
    rl_ept_rx_cb_t rx_cb; /* receive callback */
    void *rx_cb_data;     /* its last argument */
    void *rfu;            /* library-private */
};

struct rpmsg_lite_ept_static_context
{
    struct rpmsg_lite_endpoint ept;
    struct llist node;
};

/* Bytes of an instance that hold the library's own state (link, endpoint and buffer tables). */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define RL_C_STATE_BYTES (40960U)
#else
#define RL_C_STATE_BYTES (4608U)
#endif

/* One link. The fields up to link_id mean what they mean in RPMsg-Lite and may be read
 * (rl_endpoints: the endpoints, newest first; link_state: 1 when up); never write them. */
struct rpmsg_lite_instance
{
    struct virtqueue *rvq;
    struct virtqueue *tvq;
    struct llist *rl_endpoints;
    LOCK *lock;
    uint32_t link_state;
    char *sh_mem_base;
    uint32_t sh_mem_remaining;
    uint32_t sh_mem_total;
    uint32_t link_id;
    uint32_t rfu_live;
    uint32_t rfu_flags;
    struct virtqueue rfu_vq[2];
    void *rfu_state;
    uint64_t rfu_storage[RL_C_STATE_BYTES / 8U];
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    LOCK_STATIC_CONTEXT lock_static_ctxt;
#endif
};

/* Master (virtio driver): lays out both vrings and the buffers in shmem_addr..+shmem_length,
 * gives the remote its receive buffers and kicks it. The link is up on return. */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
struct rpmsg_lite_instance *rpmsg_lite_master_init(void *shmem_addr,
                                                   size_t shmem_length,
                                                   uint32_t link_id,
                                                   uint32_t init_flags,
                                                   struct rpmsg_lite_instance *static_context);
#else
struct rpmsg_lite_instance *rpmsg_lite_master_init(void *shmem_addr,
                                                   size_t shmem_length,
                                                   uint32_t link_id,
                                                   uint32_t init_flags);
#endif

/* Remote (virtio device): attaches to the layout the master writes at shmem_addr. The link
 * comes up when the master's kick arrives, or at once if the rings hold a master's init and no
 * traffic yet (with RL_C_LATE_REMOTE in init_flags: whatever the rings hold). */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
struct rpmsg_lite_instance *rpmsg_lite_remote_init(void *shmem_addr,
                                                   uint32_t link_id,
                                                   uint32_t init_flags,
                                                   struct rpmsg_lite_instance *static_context);
#else
struct rpmsg_lite_instance *rpmsg_lite_remote_init(void *shmem_addr, uint32_t link_id, uint32_t init_flags);
#endif

/* Destroys every endpoint, gives back held and allocated buffers, releases the interrupts and
 * the mutex, frees a dynamically allocated instance. RL_ERR_PARAM for NULL or a dead instance. */
int32_t rpmsg_lite_deinit(struct rpmsg_lite_instance *rpmsg_lite_dev);

/* addr RL_ADDR_ANY picks a free address. RL_NULL for a dead instance, a NULL context, an
 * address in use, or no endpoint slot left. */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
struct rpmsg_lite_endpoint *rpmsg_lite_create_ept(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                                  uint32_t addr,
                                                  rl_ept_rx_cb_t rx_cb,
                                                  void *rx_cb_data,
                                                  struct rpmsg_lite_ept_static_context *ept_context);
#else
struct rpmsg_lite_endpoint *rpmsg_lite_create_ept(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                                  uint32_t addr,
                                                  rl_ept_rx_cb_t rx_cb,
                                                  void *rx_cb_data);
#endif

/* RL_ERR_PARAM for NULL, a dead instance, or an endpoint that is not live on this instance. */
int32_t rpmsg_lite_destroy_ept(struct rpmsg_lite_instance *rpmsg_lite_dev, struct rpmsg_lite_endpoint *rl_ept);

/* Copies size bytes into a free buffer and sends it from ept->addr to dst, waiting up to
 * timeout ms for a buffer (RL_DONT_BLOCK, RL_BLOCK). RL_ERR_PARAM, RL_ERR_BUFF_SIZE,
 * RL_NOT_READY, RL_ERR_NO_MEM (no buffer in time). */
int32_t rpmsg_lite_send(struct rpmsg_lite_instance *rpmsg_lite_dev,
                        struct rpmsg_lite_endpoint *ept,
                        uint32_t dst,
                        char *data,
                        uint32_t size,
                        uintptr_t timeout);

/* 1 when the link is up, 0 otherwise (and for NULL). */
uint32_t rpmsg_lite_is_link_up(struct rpmsg_lite_instance *rpmsg_lite_dev);

/* Waits through env_wait_for_link_up; RL_TRUE when up, RL_FALSE on timeout or NULL. */
uint32_t rpmsg_lite_wait_for_link_up(struct rpmsg_lite_instance *rpmsg_lite_dev, uint32_t timeout);

#if defined(RL_API_HAS_ZEROCOPY) && (RL_API_HAS_ZEROCOPY == 1)
/* Gives back a buffer an rx callback kept with RL_HOLD. RL_ERR_PARAM for anything else
 * (including a second release of the same buffer). */
int32_t rpmsg_lite_release_rx_buffer(struct rpmsg_lite_instance *rpmsg_lite_dev, void *rxbuf);

/* A free transmit buffer's payload, *size set to its capacity; RL_NULL (and *size 0) when none
 * came within timeout ms, the link is not up, or the instance has no endpoint yet. */
void *rpmsg_lite_alloc_tx_buffer(struct rpmsg_lite_instance *rpmsg_lite_dev, uint32_t *size, uintptr_t timeout);

/* Sends a buffer from rpmsg_lite_alloc_tx_buffer. On success the buffer is no longer the
 * caller's; on an error it still is. RL_ERR_PARAM for a pointer that is not an outstanding
 * buffer of this instance. */
int32_t rpmsg_lite_send_nocopy(struct rpmsg_lite_instance *rpmsg_lite_dev,
                               struct rpmsg_lite_endpoint *ept,
                               uint32_t dst,
                               void *data,
                               uint32_t size);
#endif /* RL_API_HAS_ZEROCOPY */

#if defined(__cplusplus)
}
#endif

#endif /* RPMSG_LITE_H_ */
