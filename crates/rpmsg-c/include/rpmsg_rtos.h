/* rpmsg-c: the NXP RPMsg RTOS layer (rpmsg_rtos_*), over the same library as rpmsg_lite.h.
 *
 * Build: add src/c/rpmsg_rtos.c to the sources (beside src/c/rpmsg_c_glue.c). The layer keeps
 * one link per device (dev_id is the RPMsg-Lite link id) and gives each endpoint an
 * rpmsg_queue, so messages are taken out of interrupt context and received by tasks with a
 * timeout, by copy or zero-copy; sending is by copy or zero-copy too.
 *
 * Where the shared memory is: the layer asks the application (or its platform code) through
 * rpmsg_rtos_shmem(), which it must define.
 *
 * The default channel: rpmsg_rtos_init returns once the link is up and the default channel
 * exists. The remote creates its default endpoint and announces it under
 * RPMSG_RTOS_CHANNEL_NAME; the master waits for that announcement, creates its own default
 * endpoint and records the remote's address as the channel's dst. The remote learns the
 * master's address from the first message it receives on the default endpoint (channel->dst
 * stays RL_ADDR_ANY until then).
 *
 * Deinit ordering (as the guide describes): destroy the application's endpoints, then call
 * rpmsg_rtos_deinit. The master's deinit announces RL_NS_DESTROY for the channel; the remote
 * then marks its default channel closed: every later send on it, and every receive on the
 * default endpoint (including one blocked in rpmsg_rtos_recv*), fails with RL_NOT_READY.
 *
 * Return values: 0 (RL_SUCCESS) or a negative RL_ERR_* / RL_NOT_READY code. Timeouts are in
 * milliseconds: 0 does not wait, 0xffffffff (-1 as an int) waits for ever.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_RTOS_H_
#define RPMSG_RTOS_H_

#include "rpmsg_lite.h"
#include "rpmsg_ns.h"
#include "rpmsg_queue.h"

#if defined(__cplusplus)
extern "C" {
#endif

/* The role of this side, for rpmsg_rtos_init. */
#define RPMSG_MASTER (0)
#define RPMSG_REMOTE (1)

/* The name the remote announces its default channel under. */
#ifndef RPMSG_RTOS_CHANNEL_NAME
#define RPMSG_RTOS_CHANNEL_NAME "rpmsg-openamp-demo-channel"
#endif

/* How long rpmsg_rtos_send and rpmsg_rtos_alloc_tx_buffer wait for a buffer (the guide's 15 s). */
#ifndef RPMSG_RTOS_SEND_TIMEOUT_MS
#define RPMSG_RTOS_SEND_TIMEOUT_MS (15000U)
#endif

/* rpmsg_lite_remote_init's flags for the remote (RL_C_LATE_REMOTE: come up even if the
 * master kicked before this side listened). */
#ifndef RPMSG_RTOS_REMOTE_INIT_FLAGS
#define RPMSG_RTOS_REMOTE_INIT_FLAGS (RL_NO_FLAGS)
#endif

/* How long rpmsg_rtos_init waits for the link and the default channel (RL_BLOCK: for ever). */
#ifndef RPMSG_RTOS_INIT_TIMEOUT_MS
#define RPMSG_RTOS_INIT_TIMEOUT_MS (RL_BLOCK)
#endif

/* Static API: endpoints available to all devices together, and the buffer count the static
 * receive queues are sized for (RL_BUFFER_COUNT, or the largest custom configuration's). */
#ifndef RPMSG_RTOS_MAX_EPTS
#define RPMSG_RTOS_MAX_EPTS (8)
#endif
#ifndef RPMSG_RTOS_QUEUE_BUFFERS
#ifdef RL_BUFFER_COUNT
#define RPMSG_RTOS_QUEUE_BUFFERS (RL_BUFFER_COUNT)
#else
#define RPMSG_RTOS_QUEUE_BUFFERS (256U)
#endif
#endif

struct remote_device;
struct rpmsg_endpoint;

/* A channel: the default endpoint and the peer's address. Read-only for the application. */
struct rpmsg_channel
{
    char name[32];
    unsigned long src;               /* our default endpoint's address */
    volatile unsigned long dst;      /* the peer's, RL_ADDR_ANY while unknown */
    volatile int closed;             /* the master withdrew the channel (remote side) */
    struct remote_device *rdev;
    struct rpmsg_endpoint *rp_ept;   /* the default endpoint */
};

/* An endpoint: an RPMsg-Lite endpoint and its receive queue. Read-only for the application. */
struct rpmsg_endpoint
{
    unsigned long addr;
    struct rpmsg_channel *rp_chnl;
    struct rpmsg_lite_endpoint *rl_ept;
    rpmsg_queue_handle queue;
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    struct rpmsg_lite_ept_static_context ept_ctxt;
    rpmsg_static_queue_ctxt queue_ctxt;
    uint8_t queue_storage[2U * RPMSG_RTOS_QUEUE_BUFFERS * sizeof(rpmsg_queue_rx_cb_data_t)];
#endif
    struct rpmsg_endpoint *next;
    uint32_t live;
};

/* One device (link). */
struct remote_device
{
    int dev_id;
    int role;
    struct rpmsg_lite_instance *rl;
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    struct rpmsg_lite_instance rl_ctxt;
    rpmsg_ns_static_context ns_ctxt;
#endif
    rpmsg_ns_handle ns;
    struct rpmsg_channel def_chnl;
    struct rpmsg_endpoint *epts;
    uint32_t live;
};

/* Provided by the application or its platform code: the shared memory of device dev_id and
 * (for the master) its length in *len. RL_NULL: no such device. */
void *rpmsg_rtos_shmem(int dev_id, size_t *len);

/* Initialises the link of dev_id in role (RPMSG_MASTER / RPMSG_REMOTE), waits for it and for
 * the default channel, and returns the device and the channel. */
int rpmsg_rtos_init(int dev_id, struct remote_device **rdev, int role, struct rpmsg_channel **def_chnl);

/* Tears the device down (master: announces the channel's end first). Endpoints the
 * application did not destroy are destroyed with it. */
void rpmsg_rtos_deinit(struct remote_device *rdev);

/* An endpoint on the channel's device at addr (RL_ADDR_ANY: any free address). */
struct rpmsg_endpoint *rpmsg_rtos_create_ept(struct rpmsg_channel *rp_chnl, unsigned long addr);
void rpmsg_rtos_destroy_ept(struct rpmsg_endpoint *rp_ept);

/* Waits up to timeout_ms for a message on ept and copies it into data (at most maxlen bytes:
 * a longer message is dropped with RL_ERR_BUFF_SIZE). *len, *src: its length and source. */
int rpmsg_rtos_recv(struct rpmsg_endpoint *ept, void *data, int *len, int maxlen, unsigned long *src, int timeout_ms);

/* Waits up to timeout_ms for a message on ept and lends it: *data points into shared memory
 * until rpmsg_rtos_recv_nocopy_free(ept, *data). */
int rpmsg_rtos_recv_nocopy(struct rpmsg_endpoint *ept, void **data, int *len, unsigned long *src, int timeout_ms);

/* Gives back a buffer from rpmsg_rtos_recv_nocopy, or a transmit buffer from
 * rpmsg_rtos_alloc_tx_buffer the application decided not to send. */
int rpmsg_rtos_recv_nocopy_free(struct rpmsg_endpoint *ept, void *data);

/* A transmit buffer (waits up to RPMSG_RTOS_SEND_TIMEOUT_MS); *size: its capacity. */
void *rpmsg_rtos_alloc_tx_buffer(struct rpmsg_endpoint *ept, unsigned long *size);

/* Copies len bytes into a buffer and sends it from ept to dst (waits up to
 * RPMSG_RTOS_SEND_TIMEOUT_MS for a buffer). */
int rpmsg_rtos_send(struct rpmsg_endpoint *ept, void *data, int len, unsigned long dst);

/* Sends a buffer from rpmsg_rtos_alloc_tx_buffer; on an error it is still the caller's. */
int rpmsg_rtos_send_nocopy(struct rpmsg_endpoint *ept, void *txbuf, int len, unsigned long dst);

#if defined(__cplusplus)
}
#endif

#endif /* RPMSG_RTOS_H_ */
