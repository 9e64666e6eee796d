/* rpmsg-c: RPMsg-Lite's receive-queue API. An endpoint created with rpmsg_queue_rx_cb as its
 * callback and a queue as its data keeps each message (RL_HOLD) in the environment's queue
 * (env_create_queue, 2 x RL_BUFFER_COUNT entries); rpmsg_queue_recv copies and releases,
 * rpmsg_queue_recv_nocopy lends the buffer until rpmsg_queue_nocopy_free. A message that
 * arrives while the queue is full is dropped (its buffer released), as in RPMsg-Lite.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_QUEUE_H_
#define RPMSG_QUEUE_H_

#include "rpmsg_lite.h"

typedef void *rpmsg_queue_handle;

#if defined(RL_API_HAS_ZEROCOPY) && (RL_API_HAS_ZEROCOPY == 1)

#if defined(__cplusplus)
extern "C" {
#endif

int32_t rpmsg_queue_rx_cb(void *payload, uint32_t payload_len, uint32_t src, void *priv);

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
rpmsg_queue_handle rpmsg_queue_create(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                      uint8_t *queue_storage,
                                      rpmsg_static_queue_ctxt *queue_ctxt);
#else
rpmsg_queue_handle rpmsg_queue_create(struct rpmsg_lite_instance *rpmsg_lite_dev);
#endif

int32_t rpmsg_queue_destroy(struct rpmsg_lite_instance *rpmsg_lite_dev, rpmsg_queue_handle q);

/* Waits up to timeout ms for a message, copies up to maxlen bytes into data (RL_ERR_BUFF_SIZE
 * and the message dropped if it is longer, as in RPMsg-Lite), gives the buffer back. */
int32_t rpmsg_queue_recv(struct rpmsg_lite_instance *rpmsg_lite_dev,
                         rpmsg_queue_handle q,
                         uint32_t *src,
                         char *data,
                         uint32_t maxlen,
                         uint32_t *len,
                         uintptr_t timeout);

/* Waits up to timeout ms for a message and lends it: *data points into shared memory until
 * rpmsg_queue_nocopy_free. */
int32_t rpmsg_queue_recv_nocopy(struct rpmsg_lite_instance *rpmsg_lite_dev,
                                rpmsg_queue_handle q,
                                uint32_t *src,
                                char **data,
                                uint32_t *len,
                                uintptr_t timeout);

int32_t rpmsg_queue_nocopy_free(struct rpmsg_lite_instance *rpmsg_lite_dev, void *data);

int32_t rpmsg_queue_get_current_size(rpmsg_queue_handle q);

#if defined(__cplusplus)
}
#endif

#endif /* RL_API_HAS_ZEROCOPY */

#endif /* RPMSG_QUEUE_H_ */
