/* rpmsg-c: RPMsg-Lite's name-service API. Announcements the peer sends to address 53 reach
 * the bound callback (in interrupt context, like rx callbacks); rpmsg_ns_announce sends ours.
 * Part of rpmsg-rs (MIT OR Apache-2.0). */
#ifndef RPMSG_NS_H_
#define RPMSG_NS_H_

#include "rpmsg_lite.h"

#define RL_NS_EPT_ADDR (0x35u)

enum rpmsg_ns_flags
{
    RL_NS_CREATE  = 0,
    RL_NS_DESTROY = 1,
};

typedef void (*rpmsg_ns_new_ept_cb)(uint32_t new_ept, const char *new_ept_name, uint32_t flags, void *user_data);

/* One binding; the fields are library-private. */
struct rpmsg_ns_context
{
    struct rpmsg_lite_instance *rfu_dev;
    rpmsg_ns_new_ept_cb cb;
    void *user_data;
    uint32_t rfu_live;
    uint32_t rfu_flags;
};

typedef struct rpmsg_ns_context *rpmsg_ns_handle;
typedef struct rpmsg_ns_context rpmsg_ns_static_context;

#if defined(__cplusplus)
extern "C" {
#endif

/* One binding per instance at a time; RL_NULL for a NULL callback or context, a dead
 * instance, or a second binding. Services the peer announced before the binding (and has not
 * withdrawn; up to 8) are passed to app_cb from within this call, as RL_NS_CREATE; RPMsg-Lite
 * drops announcements that arrive before rpmsg_ns_bind. */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
rpmsg_ns_handle rpmsg_ns_bind(struct rpmsg_lite_instance *rpmsg_lite_dev,
                              rpmsg_ns_new_ept_cb app_cb,
                              void *user_data,
                              rpmsg_ns_static_context *ns_ept_ctxt);
#else
rpmsg_ns_handle rpmsg_ns_bind(struct rpmsg_lite_instance *rpmsg_lite_dev, rpmsg_ns_new_ept_cb app_cb, void *user_data);
#endif

int32_t rpmsg_ns_unbind(struct rpmsg_lite_instance *rpmsg_lite_dev, rpmsg_ns_handle handle);

/* Sends a CREATE or DESTROY for new_ept under ept_name (at most 31 bytes are used), waiting
 * for a buffer as long as it takes. RL_ERR_PARAM for NULL or a foreign endpoint. */
int32_t rpmsg_ns_announce(struct rpmsg_lite_instance *rpmsg_lite_dev,
                          struct rpmsg_lite_endpoint *new_ept,
                          const char *ept_name,
                          uint32_t flags);

#if defined(__cplusplus)
}
#endif

#endif /* RPMSG_NS_H_ */
