/* rpmsg-c glue: the part of the library compiled with the project's own headers.
 *
 * Add this file to the project's sources in place of RPMsg-Lite's rpmsg_lite.c, rpmsg_ns.c,
 * rpmsg_queue.c, virtqueue.c and llist.c, and link librpmsg_c.a. It holds what depends on the
 * project's rpmsg_config.h, environment and platform headers:
 *  - the configuration the library reads at run time (rpmsg_c_glue_geometry);
 *  - the calls whose signatures RL_USE_STATIC_API changes: they take the caller's context, or
 *    allocate one with env_allocate_memory, and forward to the library;
 *  - the rpmsg_queue API, over the environment's queues as in RPMsg-Lite;
 *  - llist's two helpers.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#include <stddef.h>
#include <stdint.h>
#include "rpmsg_lite.h"
#include "rpmsg_ns.h"
#include "rpmsg_queue.h"

#if defined(RL_USE_ENVIRONMENT_CONTEXT) && (RL_USE_ENVIRONMENT_CONTEXT == 1)
#error "rpmsg-c does not support RL_USE_ENVIRONMENT_CONTEXT"
#endif

#ifndef VRING_ALIGN
#define VRING_ALIGN (0x10U)
#endif
#ifndef RL_PLATFORM_HIGHEST_LINK_ID
#define RL_PLATFORM_HIGHEST_LINK_ID (0U)
#endif

/* Must match the library's `Glue` (src/lib.rs). */
struct rpmsg_c_glue
{
    uint32_t version;
    uint32_t payload_size;
    uint32_t buffer_count;
    uint32_t vring_align;
    uint32_t vring_size;
    uint32_t ms_per_interval;
    uint32_t highest_link_id;
    uint32_t instance_fixed;
    uint32_t ept_context_size;
    uint32_t state_bytes;
};

#define RPMSG_C_GLUE_VERSION (1U)

/* Library entry points the wrappers below forward to. */
struct rpmsg_lite_instance *rpmsg_c_init(struct rpmsg_lite_instance *dev,
                                         uint32_t master,
                                         void *shmem,
                                         size_t shmem_length,
                                         uint32_t link_id,
                                         uint32_t flags,
                                         void *lock_ctx,
                                         uint32_t allocated);
struct rpmsg_lite_endpoint *rpmsg_c_create_ept(struct rpmsg_lite_instance *dev,
                                               uint32_t addr,
                                               rl_ept_rx_cb_t rx_cb,
                                               void *rx_cb_data,
                                               struct rpmsg_lite_ept_static_context *ctx,
                                               uint32_t allocated);
rpmsg_ns_handle rpmsg_c_ns_bind(struct rpmsg_lite_instance *dev,
                                rpmsg_ns_new_ept_cb cb,
                                void *user_data,
                                struct rpmsg_ns_context *ns,
                                uint32_t allocated);
int32_t rpmsg_c_glue_geometry(uint32_t link_id, struct rpmsg_c_glue *out);
int32_t rpmsg_c_glue_create_mutex(void **lock, void *ctx);

int32_t rpmsg_c_glue_geometry(uint32_t link_id, struct rpmsg_c_glue *out)
{
    if (out == RL_NULL)
    {
        return -1;
    }
    out->version = RPMSG_C_GLUE_VERSION;
#if defined(RL_ALLOW_CUSTOM_SHMEM_CONFIG) && (RL_ALLOW_CUSTOM_SHMEM_CONFIG == 1)
    rpmsg_platform_shmem_config_t c;
    if (platform_get_custom_shmem_config(link_id, &c) != 0)
    {
        return -1;
    }
    out->payload_size = (uint32_t)c.buffer_payload_size;
    out->buffer_count = (uint32_t)c.buffer_count;
    out->vring_align  = (uint32_t)c.vring_align;
    out->vring_size   = (uint32_t)c.vring_size;
#else
    (void)link_id;
    out->payload_size = (uint32_t)RL_BUFFER_PAYLOAD_SIZE;
    out->buffer_count = (uint32_t)RL_BUFFER_COUNT;
    out->vring_align  = (uint32_t)VRING_ALIGN;
#ifdef VRING_SIZE
    out->vring_size = (uint32_t)VRING_SIZE;
#else
    out->vring_size = 0U;
#endif
#endif
    out->ms_per_interval  = (uint32_t)RL_MS_PER_INTERVAL;
    out->highest_link_id  = (uint32_t)RL_PLATFORM_HIGHEST_LINK_ID;
    out->instance_fixed   = (uint32_t)(offsetof(struct rpmsg_lite_instance, rfu_storage) +
                                     sizeof(((struct rpmsg_lite_instance *)0)->rfu_storage));
    out->ept_context_size = (uint32_t)sizeof(struct rpmsg_lite_ept_static_context);
    out->state_bytes      = (uint32_t)RL_C_STATE_BYTES;
    return 0;
}

int32_t rpmsg_c_glue_create_mutex(void **lock, void *ctx)
{
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    return env_create_mutex(lock, 1, ctx);
#else
    (void)ctx;
    return env_create_mutex(lock, 1);
#endif
}

/* ---- init ---------------------------------------------------------------------------------- */

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
struct rpmsg_lite_instance *rpmsg_lite_master_init(void *shmem_addr,
                                                   size_t shmem_length,
                                                   uint32_t link_id,
                                                   uint32_t init_flags,
                                                   struct rpmsg_lite_instance *static_context)
{
    if (static_context == RL_NULL)
    {
        return RL_NULL;
    }
    return rpmsg_c_init(static_context, 1U, shmem_addr, shmem_length, link_id, init_flags,
                        &static_context->lock_static_ctxt, 0U);
}

struct rpmsg_lite_instance *rpmsg_lite_remote_init(void *shmem_addr,
                                                   uint32_t link_id,
                                                   uint32_t init_flags,
                                                   struct rpmsg_lite_instance *static_context)
{
    if (static_context == RL_NULL)
    {
        return RL_NULL;
    }
    return rpmsg_c_init(static_context, 0U, shmem_addr, 0U, link_id, init_flags,
                        &static_context->lock_static_ctxt, 0U);
}
#else
static struct rpmsg_lite_instance *rpmsg_c_glue_init(uint32_t master,
                                                     void *shmem_addr,
                                                     size_t shmem_length,
                                                     uint32_t link_id,
                                                     uint32_t init_flags)
{
    struct rpmsg_lite_instance *dev;
    struct rpmsg_lite_instance *r;
    if (shmem_addr == RL_NULL)
    {
        return RL_NULL;
    }
    dev = (struct rpmsg_lite_instance *)env_allocate_memory((uint32_t)sizeof(*dev));
    if (dev == RL_NULL)
    {
        return RL_NULL;
    }
    env_memset(dev, 0, (uint32_t)sizeof(*dev));
    r = rpmsg_c_init(dev, master, shmem_addr, shmem_length, link_id, init_flags, RL_NULL, 1U);
    if (r == RL_NULL)
    {
        env_free_memory(dev);
    }
    return r;
}

struct rpmsg_lite_instance *rpmsg_lite_master_init(void *shmem_addr,
                                                   size_t shmem_length,
                                                   uint32_t link_id,
                                                   uint32_t init_flags)
{
    return rpmsg_c_glue_init(1U, shmem_addr, shmem_length, link_id, init_flags);
}

struct rpmsg_lite_instance *rpmsg_lite_remote_init(void *shmem_addr, uint32_t link_id, uint32_t init_flags)
{
    return rpmsg_c_glue_init(0U, shmem_addr, 0U, link_id, init_flags);
}
#endif

/* ---- endpoints ----------------------------------------------------------------------------- */

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
struct rpmsg_lite_endpoint *rpmsg_lite_create_ept(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                                  uint32_t addr,
                                                  rl_ept_rx_cb_t rx_cb,
                                                  void *rx_cb_data,
                                                  struct rpmsg_lite_ept_static_context *ept_context)
{
    return rpmsg_c_create_ept(rpmsg_lite_dev, addr, rx_cb, rx_cb_data, ept_context, 0U);
}
#else
struct rpmsg_lite_endpoint *rpmsg_lite_create_ept(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                                  uint32_t addr,
                                                  rl_ept_rx_cb_t rx_cb,
                                                  void *rx_cb_data)
{
    struct rpmsg_lite_ept_static_context *ctx;
    struct rpmsg_lite_endpoint *ept;
    if (rpmsg_lite_dev == RL_NULL)
    {
        return RL_NULL;
    }
    ctx = (struct rpmsg_lite_ept_static_context *)env_allocate_memory((uint32_t)sizeof(*ctx));
    if (ctx == RL_NULL)
    {
        return RL_NULL;
    }
    env_memset(ctx, 0, (uint32_t)sizeof(*ctx));
    ept = rpmsg_c_create_ept(rpmsg_lite_dev, addr, rx_cb, rx_cb_data, ctx, 1U);
    if (ept == RL_NULL)
    {
        env_free_memory(ctx);
    }
    return ept;
}
#endif

/* ---- name service -------------------------------------------------------------------------- */

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
rpmsg_ns_handle rpmsg_ns_bind(struct rpmsg_lite_instance *rpmsg_lite_dev,
                              rpmsg_ns_new_ept_cb app_cb,
                              void *user_data,
                              rpmsg_ns_static_context *ns_ept_ctxt)
{
    return rpmsg_c_ns_bind(rpmsg_lite_dev, app_cb, user_data, ns_ept_ctxt, 0U);
}
#else
rpmsg_ns_handle rpmsg_ns_bind(struct rpmsg_lite_instance *rpmsg_lite_dev, rpmsg_ns_new_ept_cb app_cb, void *user_data)
{
    struct rpmsg_ns_context *ns;
    rpmsg_ns_handle h;
    if ((rpmsg_lite_dev == RL_NULL) || (app_cb == RL_NULL))
    {
        return RL_NULL;
    }
    ns = (struct rpmsg_ns_context *)env_allocate_memory((uint32_t)sizeof(*ns));
    if (ns == RL_NULL)
    {
        return RL_NULL;
    }
    env_memset(ns, 0, (uint32_t)sizeof(*ns));
    h = rpmsg_c_ns_bind(rpmsg_lite_dev, app_cb, user_data, ns, 1U);
    if (h == RL_NULL)
    {
        env_free_memory(ns);
    }
    return h;
}
#endif

/* ---- queues -------------------------------------------------------------------------------- */

#if defined(RL_API_HAS_ZEROCOPY) && (RL_API_HAS_ZEROCOPY == 1)

int32_t rpmsg_queue_rx_cb(void *payload, uint32_t payload_len, uint32_t src, void *priv)
{
    rpmsg_queue_rx_cb_data_t msg;
    if (priv == RL_NULL)
    {
        return RL_RELEASE;
    }
    msg.data = payload;
    msg.len  = payload_len;
    msg.src  = src;
    /* Kept while it waits in the queue; a full queue drops it (the buffer goes back). */
    return (env_put_queue(priv, &msg, 0) != 0) ? RL_HOLD : RL_RELEASE;
}

static int32_t rpmsg_c_queue_length(struct rpmsg_lite_instance *dev)
{
    struct rpmsg_c_glue g;
    if ((dev->rfu_live == 0U) || (rpmsg_c_glue_geometry(dev->link_id, &g) != 0))
    {
        return 0;
    }
    return 2 * (int32_t)g.buffer_count;
}

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
rpmsg_queue_handle rpmsg_queue_create(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                      uint8_t *queue_storage,
                                      rpmsg_static_queue_ctxt *queue_ctxt)
#else
rpmsg_queue_handle rpmsg_queue_create(struct rpmsg_lite_instance *rpmsg_lite_dev)
#endif
{
    void *q = RL_NULL;
    int32_t n;
    int32_t status;
    if (rpmsg_lite_dev == RL_NULL)
    {
        return RL_NULL;
    }
    n = rpmsg_c_queue_length(rpmsg_lite_dev);
    if (n == 0)
    {
        return RL_NULL;
    }
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    if ((queue_storage == RL_NULL) || (queue_ctxt == RL_NULL))
    {
        return RL_NULL;
    }
    status = env_create_queue(&q, n, (int32_t)sizeof(rpmsg_queue_rx_cb_data_t), queue_storage, queue_ctxt);
#else
    status = env_create_queue(&q, n, (int32_t)sizeof(rpmsg_queue_rx_cb_data_t));
#endif
    return ((status == 0) && (q != RL_NULL)) ? (rpmsg_queue_handle)q : RL_NULL;
}

int32_t rpmsg_queue_destroy(struct rpmsg_lite_instance *rpmsg_lite_dev, rpmsg_queue_handle q)
{
    if ((rpmsg_lite_dev == RL_NULL) || (q == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    env_delete_queue(q);
    return RL_SUCCESS;
}

int32_t rpmsg_queue_recv(struct rpmsg_lite_instance *rpmsg_lite_dev,
                         rpmsg_queue_handle q,
                         uint32_t *src,
                         char *data,
                         uint32_t maxlen,
                         uint32_t *len,
                         uintptr_t timeout)
{
    rpmsg_queue_rx_cb_data_t msg = {0};
    int32_t r = RL_SUCCESS;
    if ((rpmsg_lite_dev == RL_NULL) || (q == RL_NULL) || (data == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    if (env_get_queue(q, &msg, timeout) == 0)
    {
        return RL_ERR_NO_BUFF;
    }
    if (src != RL_NULL)
    {
        *src = msg.src;
    }
    if (len != RL_NULL)
    {
        *len = msg.len;
    }
    if (msg.len <= maxlen)
    {
        env_memcpy(data, msg.data, msg.len);
    }
    else
    {
        r = RL_ERR_BUFF_SIZE;
    }
    return (rpmsg_lite_release_rx_buffer(rpmsg_lite_dev, msg.data) == RL_SUCCESS) ? r : RL_ERR_PARAM;
}

int32_t rpmsg_queue_recv_nocopy(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                rpmsg_queue_handle q,
                                uint32_t *src,
                                char **data,
                                uint32_t *len,
                                uintptr_t timeout)
{
    rpmsg_queue_rx_cb_data_t msg = {0};
    if ((rpmsg_lite_dev == RL_NULL) || (q == RL_NULL) || (data == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    if (env_get_queue(q, &msg, timeout) == 0)
    {
        return RL_ERR_NO_BUFF;
    }
    if (src != RL_NULL)
    {
        *src = msg.src;
    }
    if (len != RL_NULL)
    {
        *len = msg.len;
    }
    *data = (char *)msg.data;
    return RL_SUCCESS;
}

int32_t rpmsg_queue_nocopy_free(struct rpmsg_lite_instance *rpmsg_lite_dev, void *data)
{
    if ((rpmsg_lite_dev == RL_NULL) || (data == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    return (rpmsg_lite_release_rx_buffer(rpmsg_lite_dev, data) == RL_SUCCESS) ? RL_SUCCESS : RL_ERR_PARAM;
}

int32_t rpmsg_queue_get_current_size(rpmsg_queue_handle q)
{
    if (q == RL_NULL)
    {
        return RL_ERR_PARAM;
    }
    return env_get_current_queue_size(q);
}

#endif /* RL_API_HAS_ZEROCOPY */

/* ---- llist --------------------------------------------------------------------------------- */

void add_to_list(struct llist **head, struct llist *node)
{
    if ((head == RL_NULL) || (node == RL_NULL))
    {
        return;
    }
    node->prev = RL_NULL;
    node->next = *head;
    if (*head != RL_NULL)
    {
        (*head)->prev = node;
    }
    *head = node;
}

void remove_from_list(struct llist **head, struct llist *node)
{
    if ((head == RL_NULL) || (node == RL_NULL))
    {
        return;
    }
    if (node->prev != RL_NULL)
    {
        node->prev->next = node->next;
    }
    else if (*head == node)
    {
        *head = node->next;
    }
    if (node->next != RL_NULL)
    {
        node->next->prev = node->prev;
    }
    node->next = RL_NULL;
    node->prev = RL_NULL;
}
