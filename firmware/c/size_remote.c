/* The footprint benchmark's C remote: the same program as firmware/src/bin/size_remote.rs and
 * RPMsg-Lite's anchor (static API: remote init, wait for link-up, one callback endpoint, a
 * send), on rpmsg-c. Built, never run. */
#include "rpmsg_lite.h"

static struct rpmsg_lite_instance ctx;
static struct rpmsg_lite_ept_static_context ept_ctx;
static volatile uint32_t got;

static int32_t rx(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)payload;
    (void)src;
    (void)priv;
    got += len;
    return RL_RELEASE;
}

int main(void)
{
    struct rpmsg_lite_instance *r = rpmsg_lite_remote_init((void *)0x21000000u, 0, RL_NO_FLAGS, &ctx);
    while (!rpmsg_lite_is_link_up(r))
    {
    }
    struct rpmsg_lite_endpoint *ep = rpmsg_lite_create_ept(r, 30, rx, RL_NULL, &ept_ctx);
    for (;;)
    {
        if (got != 0u)
        {
            (void)rpmsg_lite_send(r, ep, 1024, "pong", 4, RL_BLOCK);
            got = 0;
        }
    }
}
