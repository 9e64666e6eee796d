/* rpmsg-c: the virtio split-ring structures, as laid out in shared memory (virtio 1.x, little
 * endian). Platform headers use their sizes to compute VRING_SIZE. Part of rpmsg-rs. */
#ifndef VIRTIO_RING_H_
#define VIRTIO_RING_H_

#include <stdint.h>

#define VRING_DESC_F_NEXT        1U
#define VRING_DESC_F_WRITE       2U
#define VRING_DESC_F_INDIRECT    4U
#define VRING_USED_F_NO_NOTIFY   1U
#define VRING_AVAIL_F_NO_INTERRUPT 1U

struct vring_desc
{
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_avail
{
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[1];
};

struct vring_used_elem
{
    uint32_t id;
    uint32_t len;
};

struct vring_used
{
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[1];
};

struct vring
{
    uint32_t num;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
};

#endif /* VIRTIO_RING_H_ */
