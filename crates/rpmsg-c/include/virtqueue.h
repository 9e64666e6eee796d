/* rpmsg-c: the virtqueue handle the environment's interrupt path passes back to the library.
 *
 * At init the library registers each of its two virtqueues with
 * platform_init_interrupt(vq_id, vq), as RPMsg-Lite does; the environment stores the pointer
 * (env_register_isr) and its ISR calls virtqueue_notification(vq) for the vector that fired.
 * That is the library's interrupt entry: it takes what the peer published on that link and
 * runs the rx callbacks in the calling (interrupt) context. A pointer that is not a live
 * virtqueue of a live instance is ignored.
 *
 * RPMsg-Lite's virtqueue_* ring functions are not provided: rings belong to the library.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef VIRTQUEUE_H_
#define VIRTQUEUE_H_

#include <stdint.h>
#include "rpmsg_default_config.h"
#include "virtio_ring.h"

#define VQ_NULL ((void *)0)

struct rpmsg_lite_instance;

struct virtqueue
{
    uint32_t vq_queue_index;                /* the vector id: (link_id << 1) | queue */
    uint32_t rfu_live;                      /* library-private */
    struct rpmsg_lite_instance *rfu_owner;  /* library-private */
};

void virtqueue_notification(struct virtqueue *vq);

#endif /* VIRTQUEUE_H_ */
