/* rpmsg-c: the NXP RPMsg RTOS layer over the RPMsg-Lite API of this library (see
 * include/rpmsg_rtos.h). Compiled with the project's headers, beside rpmsg_c_glue.c.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#include <stddef.h>
#include <stdint.h>
#include "rpmsg_rtos.h"

#define RTOS_LIVE (0x52544F53u) /* "RTOS" */

/* Library call (src/lib.rs): gives back an unsent transmit buffer. */
int32_t rpmsg_c_release_tx_buffer(struct rpmsg_lite_instance *dev, void *txbuf);

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
static struct remote_device rtos_devs[RL_PLATFORM_HIGHEST_LINK_ID + 1U];
static struct rpmsg_endpoint rtos_epts[RPMSG_RTOS_MAX_EPTS];
#endif

static uintptr_t rtos_timeout(int timeout_ms)
{
    return ((uint32_t)timeout_ms == 0xFFFFFFFFu) ? (uintptr_t)RL_BLOCK : (uintptr_t)(uint32_t)timeout_ms;
}

static int rtos_ept_ok(const struct rpmsg_endpoint *ept)
{
    return (ept != RL_NULL) && (ept->live == RTOS_LIVE) && (ept->rp_chnl != RL_NULL) &&
           (ept->rp_chnl->rdev != RL_NULL) && (ept->rp_chnl->rdev->live == RTOS_LIVE);
}

/* Whether ept is the default endpoint of a channel the master withdrew. */
static int rtos_closed(const struct rpmsg_endpoint *ept)
{
    return (ept->rp_chnl->closed != 0) && (ept->rp_chnl->rp_ept == ept);
}

/* Runs in interrupt context: the master's channel announcement (remote: its withdrawal). */
static void rtos_ns_cb(uint32_t new_ept, const char *name, uint32_t flags, void *user_data)
{
    struct remote_device *rdev = (struct remote_device *)user_data;
    if ((rdev == RL_NULL) || (env_strncmp((char *)rdev->def_chnl.name, name, 32U) != 0))
    {
        return;
    }
    if (flags == (uint32_t)RL_NS_CREATE)
    {
        if (rdev->role == RPMSG_MASTER)
        {
            rdev->def_chnl.dst = new_ept;
        }
    }
    else if (rdev->role == RPMSG_REMOTE)
    {
        rpmsg_queue_rx_cb_data_t wake = {RL_ADDR_ANY, RL_NULL, 0U};
        rdev->def_chnl.closed = 1;
        /* Wakes a task blocked on the default endpoint; receives then fail. */
        if (rdev->def_chnl.rp_ept != RL_NULL)
        {
            (void)env_put_queue(rdev->def_chnl.rp_ept->queue, &wake, 0U);
        }
    }
}

static struct rpmsg_endpoint *rtos_ept_alloc(void)
{
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    for (int i = 0; i < RPMSG_RTOS_MAX_EPTS; i++)
    {
        if (rtos_epts[i].live != RTOS_LIVE)
        {
            env_memset(&rtos_epts[i], 0, (uint32_t)sizeof(rtos_epts[i]));
            return &rtos_epts[i];
        }
    }
    return RL_NULL;
#else
    struct rpmsg_endpoint *e = (struct rpmsg_endpoint *)env_allocate_memory((uint32_t)sizeof(*e));
    if (e != RL_NULL)
    {
        env_memset(e, 0, (uint32_t)sizeof(*e));
    }
    return e;
#endif
}

static void rtos_ept_free(struct rpmsg_endpoint *e)
{
    e->live = 0U;
#if !(defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1))
    env_free_memory(e);
#endif
}

static struct rpmsg_endpoint *rtos_create(struct remote_device *rdev, struct rpmsg_channel *chnl, unsigned long addr)
{
    struct rpmsg_endpoint *e = rtos_ept_alloc();
    if (e == RL_NULL)
    {
        return RL_NULL;
    }
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    e->queue = rpmsg_queue_create(rdev->rl, e->queue_storage, &e->queue_ctxt);
#else
    e->queue = rpmsg_queue_create(rdev->rl);
#endif
    if (e->queue == RL_NULL)
    {
        rtos_ept_free(e);
        return RL_NULL;
    }
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    e->rl_ept = rpmsg_lite_create_ept(rdev->rl, (uint32_t)addr, rpmsg_queue_rx_cb, e->queue, &e->ept_ctxt);
#else
    e->rl_ept = rpmsg_lite_create_ept(rdev->rl, (uint32_t)addr, rpmsg_queue_rx_cb, e->queue);
#endif
    if (e->rl_ept == RL_NULL)
    {
        (void)rpmsg_queue_destroy(rdev->rl, e->queue);
        rtos_ept_free(e);
        return RL_NULL;
    }
    e->addr    = e->rl_ept->addr;
    e->rp_chnl = chnl;
    e->next    = rdev->epts;
    rdev->epts = e;
    e->live    = RTOS_LIVE;
    return e;
}

static void rtos_destroy(struct rpmsg_endpoint *e)
{
    struct remote_device *rdev = e->rp_chnl->rdev;
    struct rpmsg_endpoint **pp = &rdev->epts;
    rpmsg_queue_rx_cb_data_t msg;
    e->live = 0U;
    (void)rpmsg_lite_destroy_ept(rdev->rl, e->rl_ept);
    /* Messages still queued go back to the peer. */
    while (env_get_queue(e->queue, &msg, 0U) != 0)
    {
        if (msg.data != RL_NULL)
        {
            (void)rpmsg_lite_release_rx_buffer(rdev->rl, msg.data);
        }
    }
    (void)rpmsg_queue_destroy(rdev->rl, e->queue);
    while (*pp != RL_NULL)
    {
        if (*pp == e)
        {
            *pp = e->next;
            break;
        }
        pp = &(*pp)->next;
    }
    if (rdev->def_chnl.rp_ept == e)
    {
        rdev->def_chnl.rp_ept = RL_NULL;
    }
    rtos_ept_free(e);
}

int rpmsg_rtos_init(int dev_id, struct remote_device **rdev_out, int role, struct rpmsg_channel **def_chnl)
{
    struct remote_device *rdev;
    size_t len = 0U;
    void *shmem;
    uintptr_t waited = 0U;
    const uintptr_t limit = (uintptr_t)RPMSG_RTOS_INIT_TIMEOUT_MS;

    if ((rdev_out == RL_NULL) || (def_chnl == RL_NULL) || (dev_id < 0) ||
        ((uint32_t)dev_id > (uint32_t)RL_PLATFORM_HIGHEST_LINK_ID) ||
        ((role != RPMSG_MASTER) && (role != RPMSG_REMOTE)))
    {
        return RL_ERR_PARAM;
    }
    shmem = rpmsg_rtos_shmem(dev_id, &len);
    if (shmem == RL_NULL)
    {
        return RL_ERR_PARAM;
    }
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    rdev = &rtos_devs[dev_id];
    if (rdev->live == RTOS_LIVE)
    {
        return RL_ERR_PARAM;
    }
    env_memset(rdev, 0, (uint32_t)sizeof(*rdev));
    rdev->rl = (role == RPMSG_MASTER) ? rpmsg_lite_master_init(shmem, len, (uint32_t)dev_id, RL_NO_FLAGS, &rdev->rl_ctxt)
                                      : rpmsg_lite_remote_init(shmem, (uint32_t)dev_id, RPMSG_RTOS_REMOTE_INIT_FLAGS, &rdev->rl_ctxt);
#else
    rdev = (struct remote_device *)env_allocate_memory((uint32_t)sizeof(*rdev));
    if (rdev == RL_NULL)
    {
        return RL_ERR_NO_MEM;
    }
    env_memset(rdev, 0, (uint32_t)sizeof(*rdev));
    rdev->rl = (role == RPMSG_MASTER) ? rpmsg_lite_master_init(shmem, len, (uint32_t)dev_id, RL_NO_FLAGS)
                                      : rpmsg_lite_remote_init(shmem, (uint32_t)dev_id, RPMSG_RTOS_REMOTE_INIT_FLAGS);
#endif
    if (rdev->rl == RL_NULL)
    {
#if !(defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1))
        env_free_memory(rdev);
#endif
        return RL_NOT_READY;
    }
    rdev->dev_id = dev_id;
    rdev->role   = role;
    env_strncpy(rdev->def_chnl.name, RPMSG_RTOS_CHANNEL_NAME, (uint32_t)sizeof(rdev->def_chnl.name) - 1U);
    rdev->def_chnl.dst  = RL_ADDR_ANY;
    rdev->def_chnl.rdev = rdev;
    rdev->live          = RTOS_LIVE;

    if (rpmsg_lite_wait_for_link_up(rdev->rl, (uint32_t)limit) != RL_TRUE)
    {
        rpmsg_rtos_deinit(rdev);
        return RL_NOT_READY;
    }
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    rdev->ns = rpmsg_ns_bind(rdev->rl, rtos_ns_cb, rdev, &rdev->ns_ctxt);
#else
    rdev->ns = rpmsg_ns_bind(rdev->rl, rtos_ns_cb, rdev);
#endif
    rdev->def_chnl.rp_ept = rtos_create(rdev, &rdev->def_chnl, RL_ADDR_ANY);
    if ((rdev->ns == RL_NULL) || (rdev->def_chnl.rp_ept == RL_NULL))
    {
        rpmsg_rtos_deinit(rdev);
        return RL_ERR_NO_MEM;
    }
    rdev->def_chnl.src = rdev->def_chnl.rp_ept->addr;
    if (role == RPMSG_REMOTE)
    {
        if (rpmsg_ns_announce(rdev->rl, rdev->def_chnl.rp_ept->rl_ept, rdev->def_chnl.name, RL_NS_CREATE) !=
            RL_SUCCESS)
        {
            rpmsg_rtos_deinit(rdev);
            return RL_NOT_READY;
        }
    }
    else
    {
        /* The master waits for the remote's channel. */
        while (rdev->def_chnl.dst == RL_ADDR_ANY)
        {
            if ((limit != (uintptr_t)RL_BLOCK) && (waited >= limit))
            {
                rpmsg_rtos_deinit(rdev);
                return RL_NOT_READY;
            }
            env_sleep_msec(RL_MS_PER_INTERVAL);
            waited += RL_MS_PER_INTERVAL;
        }
    }
    *rdev_out = rdev;
    *def_chnl = &rdev->def_chnl;
    return RL_SUCCESS;
}

void rpmsg_rtos_deinit(struct remote_device *rdev)
{
    if ((rdev == RL_NULL) || (rdev->live != RTOS_LIVE))
    {
        return;
    }
    if ((rdev->role == RPMSG_MASTER) && (rdev->def_chnl.rp_ept != RL_NULL))
    {
        /* The remote learns the channel is gone. */
        (void)rpmsg_ns_announce(rdev->rl, rdev->def_chnl.rp_ept->rl_ept, rdev->def_chnl.name, RL_NS_DESTROY);
    }
    while (rdev->epts != RL_NULL)
    {
        rtos_destroy(rdev->epts);
    }
    if (rdev->ns != RL_NULL)
    {
        (void)rpmsg_ns_unbind(rdev->rl, rdev->ns);
        rdev->ns = RL_NULL;
    }
    (void)rpmsg_lite_deinit(rdev->rl);
    rdev->live = 0U;
#if !(defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1))
    env_free_memory(rdev);
#endif
}

struct rpmsg_endpoint *rpmsg_rtos_create_ept(struct rpmsg_channel *rp_chnl, unsigned long addr)
{
    if ((rp_chnl == RL_NULL) || (rp_chnl->rdev == RL_NULL) || (rp_chnl->rdev->live != RTOS_LIVE))
    {
        return RL_NULL;
    }
    return rtos_create(rp_chnl->rdev, rp_chnl, addr);
}

void rpmsg_rtos_destroy_ept(struct rpmsg_endpoint *rp_ept)
{
    if (rtos_ept_ok(rp_ept))
    {
        rtos_destroy(rp_ept);
    }
}

/* Takes the next message of ept (or the channel-closed marker) within timeout_ms. */
static int rtos_take(struct rpmsg_endpoint *ept, rpmsg_queue_rx_cb_data_t *msg, int timeout_ms)
{
    if (rtos_closed(ept))
    {
        return RL_NOT_READY;
    }
    if (env_get_queue(ept->queue, msg, rtos_timeout(timeout_ms)) == 0)
    {
        return RL_ERR_NO_BUFF;
    }
    if (msg->data == RL_NULL)
    {
        /* The marker: put it back for the next waiter. */
        (void)env_put_queue(ept->queue, msg, 0U);
        return RL_NOT_READY;
    }
    if ((ept->rp_chnl->rp_ept == ept) && (ept->rp_chnl->dst == RL_ADDR_ANY))
    {
        ept->rp_chnl->dst = msg->src;
    }
    return RL_SUCCESS;
}

int rpmsg_rtos_recv(struct rpmsg_endpoint *ept, void *data, int *len, int maxlen, unsigned long *src, int timeout_ms)
{
    rpmsg_queue_rx_cb_data_t msg;
    int r;
    struct rpmsg_lite_instance *rl;
    if (!rtos_ept_ok(ept) || (data == RL_NULL) || (maxlen < 0))
    {
        return RL_ERR_PARAM;
    }
    rl = ept->rp_chnl->rdev->rl;
    r  = rtos_take(ept, &msg, timeout_ms);
    if (r != RL_SUCCESS)
    {
        return r;
    }
    if (src != RL_NULL)
    {
        *src = msg.src;
    }
    if (msg.len > (uint32_t)maxlen)
    {
        r = RL_ERR_BUFF_SIZE;
        if (len != RL_NULL)
        {
            *len = 0;
        }
    }
    else
    {
        env_memcpy(data, msg.data, msg.len);
        if (len != RL_NULL)
        {
            *len = (int)msg.len;
        }
    }
    (void)rpmsg_lite_release_rx_buffer(rl, msg.data);
    return r;
}

int rpmsg_rtos_recv_nocopy(struct rpmsg_endpoint *ept, void **data, int *len, unsigned long *src, int timeout_ms)
{
    rpmsg_queue_rx_cb_data_t msg;
    int r;
    if (!rtos_ept_ok(ept) || (data == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    r = rtos_take(ept, &msg, timeout_ms);
    if (r != RL_SUCCESS)
    {
        return r;
    }
    *data = msg.data;
    if (len != RL_NULL)
    {
        *len = (int)msg.len;
    }
    if (src != RL_NULL)
    {
        *src = msg.src;
    }
    return RL_SUCCESS;
}

int rpmsg_rtos_recv_nocopy_free(struct rpmsg_endpoint *ept, void *data)
{
    struct rpmsg_lite_instance *rl;
    if (!rtos_ept_ok(ept) || (data == RL_NULL))
    {
        return RL_ERR_PARAM;
    }
    rl = ept->rp_chnl->rdev->rl;
    if (rpmsg_lite_release_rx_buffer(rl, data) == RL_SUCCESS)
    {
        return RL_SUCCESS;
    }
    return (rpmsg_c_release_tx_buffer(rl, data) == RL_SUCCESS) ? RL_SUCCESS : RL_ERR_PARAM;
}

void *rpmsg_rtos_alloc_tx_buffer(struct rpmsg_endpoint *ept, unsigned long *size)
{
    uint32_t sz = 0U;
    void *b;
    if (size != RL_NULL)
    {
        *size = 0U;
    }
    if (!rtos_ept_ok(ept) || (size == RL_NULL))
    {
        return RL_NULL;
    }
    b = rpmsg_lite_alloc_tx_buffer(ept->rp_chnl->rdev->rl, &sz, (uintptr_t)RPMSG_RTOS_SEND_TIMEOUT_MS);
    *size = sz;
    return b;
}

static int rtos_send_check(const struct rpmsg_endpoint *ept, unsigned long dst)
{
    if (!rtos_ept_ok(ept))
    {
        return RL_ERR_PARAM;
    }
    if ((ept->rp_chnl->closed != 0) && (dst == ept->rp_chnl->dst))
    {
        return RL_NOT_READY;
    }
    return RL_SUCCESS;
}

int rpmsg_rtos_send(struct rpmsg_endpoint *ept, void *data, int len, unsigned long dst)
{
    int r = rtos_send_check(ept, dst);
    if (r != RL_SUCCESS)
    {
        return r;
    }
    if (len < 0)
    {
        return RL_ERR_PARAM;
    }
    return rpmsg_lite_send(ept->rp_chnl->rdev->rl, ept->rl_ept, (uint32_t)dst, (char *)data, (uint32_t)len,
                           (uintptr_t)RPMSG_RTOS_SEND_TIMEOUT_MS);
}

int rpmsg_rtos_send_nocopy(struct rpmsg_endpoint *ept, void *txbuf, int len, unsigned long dst)
{
    int r = rtos_send_check(ept, dst);
    if (r != RL_SUCCESS)
    {
        return r;
    }
    if (len < 0)
    {
        return RL_ERR_PARAM;
    }
    return rpmsg_lite_send_nocopy(ept->rp_chnl->rdev->rl, ept->rl_ept, (uint32_t)dst, txbuf, (uint32_t)len);
}
