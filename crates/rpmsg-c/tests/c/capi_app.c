/* A C program on rpmsg-c's RPMsg-Lite API, one side of a two-process link over rpmsg-rs's
 * shared file (host_port.c). Built by tests/c_programs.rs once per configuration.
 *
 *   capi_app master|remote echo FILE [--sockdir DIR]
 *       Serves "rpmsg-echo": announces it, keeps each message (RL_HOLD), answers with a
 *       zero-copy buffer (rpmsg_lite_alloc_tx_buffer + rpmsg_lite_send_nocopy), releases the
 *       message (rpmsg_lite_release_rx_buffer); runs until the other side closes.
 *   capi_app master|remote ping FILE [--count N] [--size S | --sweep] [--sockdir DIR]
 *       Binds the name service, waits for "rpmsg-echo", sends N messages and checks each echo.
 *       Even messages: rpmsg_lite_send + rpmsg_queue_recv; odd ones: zero-copy both ways
 *       (alloc/send_nocopy, rpmsg_queue_recv_nocopy/nocopy_free). --sweep sends every payload
 *       size 0..RL_BUFFER_PAYLOAD_SIZE in turn.
 *   capi_app master|remote sessions FILE [--count K] [--sockdir DIR]
 *       K sessions on one shared file, each side initialising and de-initialising its instance
 *       every time (the remote without RL_C_LATE_REMOTE: it comes up on the master's kick). The
 *       master holds the remote's echo (RL_HOLD) and gives it back only after the remote has
 *       de-initialised and initialised again, so a doorbell for that buffer would reach the new
 *       remote between two sessions. Sides wait for each other through the host block.
 *   capi_app checks FILE [SOCKDIR]
 *       One process, master only (its buffers are never returned): the parameter checks and
 *       error codes of every call, then init/deinit twice.
 * Prints one line "capi_app: ok ..." and exits 0 on success; anything else is a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpmsg_lite.h"
#include "rpmsg_ns.h"
#include "rpmsg_queue.h"
#include "host_port.h"

#define PAYLOAD ((uint32_t)RL_BUFFER_PAYLOAD_SIZE)

static int failures;
#define CHECK(cond)                                                                   \
    do                                                                                \
    {                                                                                 \
        if (!(cond))                                                                  \
        {                                                                             \
            fprintf(stderr, "capi_app: check failed at line %d: %s\n", __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
static struct rpmsg_lite_instance inst_ctx;
static struct rpmsg_lite_ept_static_context ept_ctx[4];
static rpmsg_ns_static_context ns_ctx;
static uint8_t queue_storage[2 * RL_BUFFER_COUNT * sizeof(rpmsg_queue_rx_cb_data_t)];
static rpmsg_static_queue_ctxt queue_ctx;
#define MASTER_INIT(b, l) rpmsg_lite_master_init((b), (l), 0, RL_NO_FLAGS, &inst_ctx)
#define REMOTE_INIT(b)    rpmsg_lite_remote_init((b), 0, RL_C_LATE_REMOTE, &inst_ctx)
#define CREATE_EPT(d, a, cb, p, i) rpmsg_lite_create_ept((d), (a), (cb), (p), &ept_ctx[(i)])
#define NS_BIND(d, cb, p) rpmsg_ns_bind((d), (cb), (p), &ns_ctx)
#define QUEUE_CREATE(d)   rpmsg_queue_create((d), queue_storage, &queue_ctx)
#else
#define MASTER_INIT(b, l) rpmsg_lite_master_init((b), (l), 0, RL_NO_FLAGS)
#define REMOTE_INIT(b)    rpmsg_lite_remote_init((b), 0, RL_C_LATE_REMOTE)
#define CREATE_EPT(d, a, cb, p, i) rpmsg_lite_create_ept((d), (a), (cb), (p))
#define NS_BIND(d, cb, p) rpmsg_ns_bind((d), (cb), (p))
#define QUEUE_CREATE(d)   rpmsg_queue_create((d))
#endif

/* ---- echo ---- */

struct held
{
    void *data;
    uint32_t len, src;
};
#define HELD_MAX 512
static struct held held_q[HELD_MAX];
static unsigned held_head, held_tail;

static int32_t echo_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    if (held_tail - held_head >= HELD_MAX)
        return RL_RELEASE;
    held_q[held_tail % HELD_MAX] = (struct held){payload, len, src};
    held_tail++;
    return RL_HOLD;
}

static int run_echo(struct rpmsg_lite_instance *rl)
{
    unsigned long echoed = 0;
    struct rpmsg_lite_endpoint *ep = CREATE_EPT(rl, RL_ADDR_ANY, echo_cb, NULL, 0);
    if (ep == RL_NULL)
    {
        fprintf(stderr, "capi_app: create_ept failed\n");
        return 3;
    }
    if (rpmsg_ns_announce(rl, ep, "rpmsg-echo", RL_NS_CREATE) != RL_SUCCESS)
    {
        fprintf(stderr, "capi_app: announce failed\n");
        return 3;
    }
    while (!host_peer_closed())
    {
        env_sleep_msec(1);
        while (held_head != held_tail)
        {
            struct held m = held_q[held_head % HELD_MAX];
            uint32_t cap = 0;
            void *tx = rpmsg_lite_alloc_tx_buffer(rl, &cap, 5000);
            if (tx == RL_NULL || cap < m.len)
            {
                fprintf(stderr, "capi_app: alloc_tx_buffer failed (cap %u) after %lu\n", cap, echoed);
                return 4;
            }
            memcpy(tx, m.data, m.len);
            int32_t r = rpmsg_lite_send_nocopy(rl, ep, m.src, tx, m.len);
            if (r != RL_SUCCESS)
            {
                fprintf(stderr, "capi_app: send_nocopy: %d after %lu\n", (int)r, echoed);
                return 4;
            }
            r = rpmsg_lite_release_rx_buffer(rl, m.data);
            if (r != RL_SUCCESS)
            {
                fprintf(stderr, "capi_app: release_rx_buffer: %d\n", (int)r);
                return 4;
            }
            CHECK(rpmsg_lite_release_rx_buffer(rl, m.data) == RL_ERR_PARAM); /* twice */
            held_head++;
            echoed++;
        }
        if (host_isr_while_masked)
        {
            fprintf(stderr, "capi_app: a doorbell was delivered while the library masked it\n");
            return 5;
        }
    }
    CHECK(rpmsg_lite_destroy_ept(rl, ep) == RL_SUCCESS);
    printf("capi_app: ok echoed %lu messages; doorbells sent %lu delivered %lu\n", echoed, host_doorbells_sent,
           host_doorbells_delivered);
    return failures ? 5 : 0;
}

/* ---- ping ---- */

static volatile uint32_t echo_addr;
static volatile int echo_gone;

static void ns_cb(uint32_t new_ept, const char *name, uint32_t flags, void *user)
{
    CHECK(user == (void *)&echo_addr);
    if (strncmp(name, "rpmsg-echo", 32) == 0)
    {
        if (flags == RL_NS_CREATE)
            echo_addr = new_ept;
        else
            echo_gone = 1;
    }
}

static int run_ping(struct rpmsg_lite_instance *rl, long count, long size, int sweep)
{
    static uint8_t out[PAYLOAD + 1], in[PAYLOAD + 1];
    rpmsg_ns_handle ns = NS_BIND(rl, ns_cb, (void *)&echo_addr);
    rpmsg_queue_handle q = QUEUE_CREATE(rl);
    struct rpmsg_lite_endpoint *ep;
    uint64_t t0;
    if (ns == RL_NULL || q == RL_NULL)
    {
        fprintf(stderr, "capi_app: ns_bind or queue_create failed\n");
        return 3;
    }
    ep = CREATE_EPT(rl, RL_ADDR_ANY, rpmsg_queue_rx_cb, q, 0);
    if (ep == RL_NULL)
    {
        fprintf(stderr, "capi_app: create_ept failed\n");
        return 3;
    }
    /* A receive with a timeout and nothing to receive. */
    {
        uint32_t src = 0, len = 0;
        uint64_t t = host_now_ms();
        CHECK(rpmsg_queue_recv(rl, q, &src, (char *)in, sizeof in, &len, 20) == RL_ERR_NO_BUFF);
        CHECK(host_now_ms() - t >= 20);
        CHECK(rpmsg_queue_get_current_size(q) == 0);
    }
    t0 = host_now_ms();
    while (echo_addr == 0)
    {
        env_sleep_msec(1);
        if (host_now_ms() - t0 > 60000)
        {
            fprintf(stderr, "capi_app: no rpmsg-echo announced within 60 s\n");
            return 3;
        }
    }
    for (long i = 0; i < count; i++)
    {
        uint32_t n = sweep ? (uint32_t)(i % (PAYLOAD + 1)) : (uint32_t)size;
        uint32_t src = 0, len = 0;
        int32_t r;
        for (uint32_t k = 0; k < n; k++)
            out[k] = (uint8_t)(i * 7 + k);
        if (i % 2 == 0)
        {
            r = rpmsg_lite_send(rl, ep, echo_addr, (char *)out, n, RL_BLOCK);
        }
        else
        {
            uint32_t cap = 0;
            void *tx = rpmsg_lite_alloc_tx_buffer(rl, &cap, RL_BLOCK);
            if (tx == RL_NULL || cap != PAYLOAD)
            {
                fprintf(stderr, "capi_app: alloc_tx_buffer %ld: %p cap %u\n", i, tx, cap);
                return 4;
            }
            memcpy(tx, out, n);
            r = rpmsg_lite_send_nocopy(rl, ep, echo_addr, tx, n);
            CHECK(rpmsg_lite_send_nocopy(rl, ep, echo_addr, tx, n) == RL_ERR_PARAM); /* twice */
        }
        if (r != RL_SUCCESS)
        {
            fprintf(stderr, "capi_app: send %ld (%u bytes): %d\n", i, n, (int)r);
            return 4;
        }
        if (i % 2 == 0)
        {
            r = rpmsg_queue_recv(rl, q, &src, (char *)in, sizeof in, &len, 10000);
            if (r != RL_SUCCESS || len != n || src != echo_addr || memcmp(in, out, n) != 0)
            {
                fprintf(stderr, "capi_app: echo %ld: r %d len %u (sent %u) src %u\n", i, (int)r, len, n, src);
                return 5;
            }
        }
        else
        {
            char *data = NULL;
            r = rpmsg_queue_recv_nocopy(rl, q, &src, &data, &len, 10000);
            if (r != RL_SUCCESS || len != n || src != echo_addr || memcmp(data, out, n) != 0)
            {
                fprintf(stderr, "capi_app: echo %ld (no copy): r %d len %u (sent %u)\n", i, (int)r, len, n);
                return 5;
            }
            CHECK(rpmsg_queue_nocopy_free(rl, data) == RL_SUCCESS);
            CHECK(rpmsg_queue_nocopy_free(rl, data) == RL_ERR_PARAM); /* twice */
        }
    }
    double ms = (double)(host_now_ms() - t0);
    CHECK(rpmsg_lite_destroy_ept(rl, ep) == RL_SUCCESS);
    CHECK(rpmsg_queue_destroy(rl, q) == RL_SUCCESS);
    CHECK(rpmsg_ns_unbind(rl, ns) == RL_SUCCESS);
    CHECK(!host_isr_while_masked);
    printf("capi_app: ok %ld round trips (%s), %.0f ms; doorbells sent %lu delivered %lu\n", count,
           sweep ? "every payload size" : "fixed size", ms, host_doorbells_sent, host_doorbells_delivered);
    return failures ? 5 : 0;
}

/* ---- sessions ---- */

#define READY 0x0u /* scratch word: the session the remote is ready for */
#define DONE  0x4u /* scratch word: the session the master has finished */

static volatile uint32_t sess_addr, sess_got;
static void *sess_held;

static void sess_ns(uint32_t new_ept, const char *name, uint32_t flags, void *user)
{
    (void)user;
    if (flags == RL_NS_CREATE && strncmp(name, "rpmsg-echo", 32) == 0)
        sess_addr = new_ept;
}

static int32_t sess_master_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    (void)src;
    if (len == 4)
        memcpy((void *)&sess_got, payload, 4);
    sess_held = payload;
    return RL_HOLD;
}

static volatile uint32_t sess_req, sess_src;
static int32_t sess_remote_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    if (len == 4)
    {
        memcpy((void *)&sess_req, payload, 4);
        sess_src = src;
    }
    return RL_RELEASE;
}

static int wait_word(volatile uint32_t *w, uint32_t v)
{
    uint64_t t0 = host_now_ms();
    while (*w < v)
    {
        env_sleep_msec(1);
        if (host_now_ms() - t0 > 60000)
            return -1;
    }
    return 0;
}

static int run_sessions(int master, void *base, size_t len, long count)
{
    for (uint32_t k = 1; k <= (uint32_t)count; k++)
    {
        if (master)
        {
            if (wait_word(host_scratch(READY), k) != 0)
            {
                fprintf(stderr, "capi_app: remote not ready for session %u\n", k);
                return 3;
            }
            struct rpmsg_lite_instance *rl = MASTER_INIT(base, len);
            sess_addr = 0;
            sess_got = 0;
            sess_held = NULL;
            rpmsg_ns_handle ns = NS_BIND(rl, sess_ns, NULL);
            struct rpmsg_lite_endpoint *ep = CREATE_EPT(rl, 40, sess_master_cb, NULL, 0);
            CHECK(rl != RL_NULL && ns != RL_NULL && ep != RL_NULL);
            if (rl == RL_NULL || ep == RL_NULL)
                return 3;
            uint64_t t0 = host_now_ms();
            while (sess_addr == 0 && host_now_ms() - t0 < 60000)
                env_sleep_msec(1);
            CHECK(rpmsg_lite_send(rl, ep, sess_addr, (char *)&k, 4, RL_BLOCK) == RL_SUCCESS);
            t0 = host_now_ms();
            while (sess_got != k && host_now_ms() - t0 < 60000)
                env_sleep_msec(1);
            if (sess_got != k)
            {
                fprintf(stderr, "capi_app: no echo in session %u\n", k);
                return 5;
            }
            /* The remote starts its next life; only then does the echo's buffer go back. */
            if (k < (uint32_t)count && wait_word(host_scratch(READY), k + 1) != 0)
                return 3;
            CHECK(rpmsg_lite_release_rx_buffer(rl, sess_held) == RL_SUCCESS);
            CHECK(rpmsg_lite_destroy_ept(rl, ep) == RL_SUCCESS && rpmsg_ns_unbind(rl, ns) == RL_SUCCESS);
            CHECK(rpmsg_lite_deinit(rl) == RL_SUCCESS);
            *host_scratch(DONE) = k;
        }
        else
        {
            struct rpmsg_lite_instance *rl =
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
                rpmsg_lite_remote_init(base, 0, RL_NO_FLAGS, &inst_ctx);
#else
                rpmsg_lite_remote_init(base, 0, RL_NO_FLAGS);
#endif
            sess_req = 0;
            *host_scratch(READY) = k;
            if (rl == RL_NULL || rpmsg_lite_wait_for_link_up(rl, 60000) != 1)
            {
                fprintf(stderr, "capi_app: session %u: no link-up\n", k);
                return 3;
            }
            struct rpmsg_lite_endpoint *ep = CREATE_EPT(rl, 30, sess_remote_cb, NULL, 0);
            CHECK(ep != RL_NULL && rpmsg_ns_announce(rl, ep, "rpmsg-echo", RL_NS_CREATE) == RL_SUCCESS);
            uint64_t t0 = host_now_ms();
            while (sess_req != k && host_now_ms() - t0 < 60000)
                env_sleep_msec(1);
            if (sess_req != k)
            {
                fprintf(stderr, "capi_app: session %u: got %u\n", k, sess_req);
                return 5;
            }
            CHECK(rpmsg_lite_send(rl, ep, sess_src, (char *)&k, 4, RL_BLOCK) == RL_SUCCESS);
            CHECK(rpmsg_lite_destroy_ept(rl, ep) == RL_SUCCESS);
            CHECK(rpmsg_lite_deinit(rl) == RL_SUCCESS);
            /* Next life at once: the master still holds this session's echo. */
        }
    }
    if (!master && wait_word(host_scratch(DONE), (uint32_t)count) != 0)
        return 3;
    printf("capi_app: ok %ld sessions as %s\n", count, master ? "master" : "remote");
    return failures ? 5 : 0;
}

/* ---- checks ---- */

static volatile int cb_runs;
static int32_t count_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)payload;
    (void)len;
    (void)src;
    (void)priv;
    cb_runs++;
    return RL_RELEASE;
}

static void ns_nop(uint32_t new_ept, const char *name, uint32_t flags, void *user)
{
    (void)new_ept;
    (void)name;
    (void)flags;
    (void)user;
}

static int run_checks(void *base, size_t len)
{
    char data[8] = "abcdefg";
    uint32_t size = 123;
    struct rpmsg_lite_instance *rl;

    /* Bad init arguments. */
    CHECK(MASTER_INIT(NULL, len) == RL_NULL);
    CHECK(rpmsg_lite_master_init(base, len, 1, RL_NO_FLAGS
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
                                 , &inst_ctx
#endif
                                 ) == RL_NULL); /* link id above RL_PLATFORM_HIGHEST_LINK_ID */
    CHECK(MASTER_INIT(base, 64) == RL_NULL);     /* too small for the layout */
    CHECK(MASTER_INIT((char *)base + 4, len - 4) == RL_NULL); /* not 8-byte aligned */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
    CHECK(rpmsg_lite_master_init(base, len, 0, RL_NO_FLAGS, NULL) == RL_NULL);
    {
        /* A zeroed instance is not a live one. */
        static struct rpmsg_lite_instance zero;
        uint32_t sz = 5;
        CHECK(rpmsg_lite_send(&zero, (struct rpmsg_lite_endpoint *)&ept_ctx[3], 1, data, 1, RL_DONT_BLOCK) ==
              RL_NOT_READY);
        CHECK(rpmsg_lite_alloc_tx_buffer(&zero, &sz, RL_DONT_BLOCK) == RL_NULL && sz == 0);
        CHECK(rpmsg_lite_deinit(&zero) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_is_link_up(&zero) == 0);
    }
#endif
    CHECK(rpmsg_lite_deinit(NULL) == RL_ERR_PARAM);
    CHECK(rpmsg_lite_is_link_up(NULL) == 0);
    CHECK(rpmsg_lite_wait_for_link_up(NULL, (uint32_t)RL_BLOCK) == 0);

    for (int round = 0; round < 2; round++)
    {
        rl = MASTER_INIT(base, len);
        CHECK(rl != RL_NULL);
        if (rl == RL_NULL)
            return 5;
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
        CHECK(rl == &inst_ctx);
        CHECK(MASTER_INIT(base, len) == RL_NULL); /* already initialised */
#endif
        CHECK(rpmsg_lite_is_link_up(rl) == 1);
        CHECK(rpmsg_lite_wait_for_link_up(rl, 10) == 1);

        /* Endpoints. */
        CHECK(CREATE_EPT(NULL, 10, count_cb, NULL, 0) == RL_NULL);
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
        CHECK(rpmsg_lite_create_ept(rl, 10, count_cb, NULL, NULL) == RL_NULL);
#endif
        uint32_t sz0 = 9;
        CHECK(rpmsg_lite_alloc_tx_buffer(rl, &sz0, RL_DONT_BLOCK) == RL_NULL && sz0 == 0); /* no endpoint yet */
        struct rpmsg_lite_endpoint *a = CREATE_EPT(rl, 10, count_cb, NULL, 0);
        CHECK(a != RL_NULL && a->addr == 10);
        CHECK(CREATE_EPT(rl, 10, count_cb, NULL, 1) == RL_NULL); /* address in use */
        struct rpmsg_lite_endpoint *b = CREATE_EPT(rl, RL_ADDR_ANY, count_cb, NULL, 1);
        CHECK(b != RL_NULL && b->addr == 1); /* RL_ADDR_ANY: the lowest free address, as RPMsg-Lite */
        /* The instance's list holds both, newest first. */
        CHECK(rl->rl_endpoints != NULL && rl->rl_endpoints->data == (void *)b);
        CHECK(rl->rl_endpoints->next != NULL && rl->rl_endpoints->next->data == (void *)a);
        CHECK(rl->rl_endpoints->next->next == NULL);

        /* Sending. */
        CHECK(rpmsg_lite_send(rl, NULL, 20, data, 4, RL_DONT_BLOCK) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send(rl, a, 20, NULL, 4, RL_DONT_BLOCK) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send(NULL, a, 20, data, 4, RL_DONT_BLOCK) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send(rl, a, 20, data, 0xffffffffu, RL_DONT_BLOCK) == RL_ERR_BUFF_SIZE);
        CHECK(rpmsg_lite_send(rl, a, 20, data, PAYLOAD + 1, RL_DONT_BLOCK) == RL_ERR_BUFF_SIZE);
        {
            /* An endpoint that is not this instance's. */
            struct rpmsg_lite_endpoint fake = {.addr = 10};
            CHECK(rpmsg_lite_send(rl, &fake, 20, data, 4, RL_DONT_BLOCK) == RL_ERR_PARAM);
            CHECK(rpmsg_lite_destroy_ept(rl, &fake) == RL_ERR_PARAM);
        }
        /* The master owns RL_BUFFER_COUNT transmit buffers; nobody returns them here. */
        uint32_t sent = 0;
        while (rpmsg_lite_send(rl, a, 20, data, 4, RL_DONT_BLOCK) == RL_SUCCESS)
            sent++;
        CHECK(sent == RL_BUFFER_COUNT);
        CHECK(rpmsg_lite_send(rl, a, 20, data, 4, RL_DONT_BLOCK) == RL_ERR_NO_MEM);
        {
            uint64_t t = host_now_ms();
            CHECK(rpmsg_lite_send(rl, a, 20, data, 4, 30) == RL_ERR_NO_MEM);
            CHECK(host_now_ms() - t >= 30);
        }
        uint32_t sz = 77;
        CHECK(rpmsg_lite_alloc_tx_buffer(rl, &sz, RL_DONT_BLOCK) == RL_NULL && sz == 0);
        CHECK(rpmsg_lite_alloc_tx_buffer(rl, NULL, RL_DONT_BLOCK) == RL_NULL);

        /* Zero-copy parameter checks. */
        CHECK(rpmsg_lite_release_rx_buffer(NULL, data) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_release_rx_buffer(rl, NULL) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_release_rx_buffer(rl, data) == RL_ERR_PARAM);            /* not a buffer */
        CHECK(rpmsg_lite_release_rx_buffer(rl, (char *)base + 2048) == RL_ERR_PARAM); /* not held */
        CHECK(rpmsg_lite_send_nocopy(rl, a, 20, NULL, 4) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send_nocopy(rl, NULL, 20, data, 4) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send_nocopy(rl, a, 20, data, 4) == RL_ERR_PARAM);            /* not allocated */
        CHECK(rpmsg_lite_send_nocopy(rl, a, 20, (char *)base + 2048, 4) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send_nocopy(rl, a, 20, data, PAYLOAD + 1) == RL_ERR_BUFF_SIZE);

        /* Name service. */
        CHECK(NS_BIND(rl, NULL, NULL) == RL_NULL);
        CHECK(NS_BIND(NULL, ns_nop, NULL) == RL_NULL);
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
        CHECK(rpmsg_ns_bind(rl, ns_nop, NULL, NULL) == RL_NULL);
#endif
        rpmsg_ns_handle h = NS_BIND(rl, ns_nop, NULL);
        CHECK(h != RL_NULL);
        CHECK(rpmsg_ns_announce(rl, NULL, "x", RL_NS_CREATE) == RL_ERR_PARAM);
        CHECK(rpmsg_ns_announce(rl, a, NULL, RL_NS_CREATE) == RL_ERR_PARAM);
        CHECK(rpmsg_ns_announce(NULL, a, "x", RL_NS_CREATE) == RL_ERR_PARAM);
        CHECK(rpmsg_ns_unbind(rl, h) == RL_SUCCESS);
        CHECK(rpmsg_ns_unbind(rl, h) == RL_ERR_PARAM);
        CHECK(rpmsg_ns_unbind(NULL, h) == RL_ERR_PARAM);

        /* Queues. */
        CHECK(rpmsg_queue_destroy(rl, NULL) == RL_ERR_PARAM);
        CHECK(rpmsg_queue_recv(rl, NULL, NULL, data, 4, NULL, RL_DONT_BLOCK) == RL_ERR_PARAM);
        CHECK(rpmsg_queue_nocopy_free(rl, NULL) == RL_ERR_PARAM);
        CHECK(rpmsg_queue_get_current_size(NULL) == RL_ERR_PARAM);

        /* Destroying. */
        CHECK(rpmsg_lite_destroy_ept(NULL, a) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_destroy_ept(rl, NULL) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_destroy_ept(rl, a) == RL_SUCCESS);
        CHECK(rl->rl_endpoints != NULL && rl->rl_endpoints->data == (void *)b && rl->rl_endpoints->next == NULL);
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
        CHECK(rpmsg_lite_destroy_ept(rl, a) == RL_ERR_PARAM); /* twice (static: the memory is still ours) */
#endif
        CHECK(rpmsg_lite_send(rl, b, 20, data, 4, RL_DONT_BLOCK) == RL_ERR_NO_MEM);

        CHECK(rpmsg_lite_deinit(rl) == RL_SUCCESS);
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
        CHECK(rpmsg_lite_is_link_up(rl) == 0);
        CHECK(rpmsg_lite_deinit(rl) == RL_ERR_PARAM);
        CHECK(rpmsg_lite_send(rl, b, 20, data, 4, RL_DONT_BLOCK) == RL_NOT_READY);
#endif
        CHECK(cb_runs == 0);
    }
    (void)size;
    printf("capi_app: ok checks (%s API)\n",
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
           "static"
#else
           "dynamic"
#endif
    );
    return failures ? 5 : 0;
}

int main(int argc, char **argv)
{
    const char *sockdir = "/tmp";
    long count = 10, size = 16;
    int sweep = 0, master, rc;
    size_t len = 0;
    void *base;
    struct rpmsg_lite_instance *rl;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 3 && strcmp(argv[1], "checks") == 0)
    {
        base = host_open(1, argv[2], argc >= 4 ? argv[3] : sockdir, &len);
        rc = run_checks(base, len);
        host_close();
        return rc;
    }
    if (argc < 4)
    {
        fprintf(stderr, "usage: capi_app master|remote echo|ping FILE [options] | capi_app checks FILE [SOCKDIR]\n");
        return 2;
    }
    for (int i = 4; i < argc; i++)
    {
        if (strcmp(argv[i], "--sweep") == 0)
            sweep = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--count") == 0)
            count = strtol(argv[++i], NULL, 0);
        else if (i + 1 < argc && strcmp(argv[i], "--size") == 0)
            size = strtol(argv[++i], NULL, 0);
        else if (i + 1 < argc && strcmp(argv[i], "--sockdir") == 0)
            sockdir = argv[++i];
        else
        {
            fprintf(stderr, "capi_app: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (sweep)
        count = (long)PAYLOAD + 1;
    if (size < 0 || size > (long)PAYLOAD)
    {
        fprintf(stderr, "capi_app: --size above RL_BUFFER_PAYLOAD_SIZE\n");
        return 2;
    }
    master = strcmp(argv[1], "master") == 0;
    base = host_open(master, argv[3], sockdir, &len);
    if (strcmp(argv[2], "sessions") == 0)
    {
        rc = run_sessions(master, base, len, count);
        host_close();
        return rc;
    }
    rl = master ? MASTER_INIT(base, len) : REMOTE_INIT(base);
    if (rl == RL_NULL)
    {
        fprintf(stderr, "capi_app: init failed\n");
        host_close();
        return 3;
    }
    if (rpmsg_lite_wait_for_link_up(rl, 60000) != 1)
    {
        fprintf(stderr, "capi_app: link not up within 60 s\n");
        host_close();
        return 3;
    }
    rc = strcmp(argv[2], "echo") == 0 ? run_echo(rl) : run_ping(rl, count, size, sweep);
    CHECK(rpmsg_lite_deinit(rl) == RL_SUCCESS);
    host_close();
    return rc ? rc : (failures ? 5 : 0);
}
