/* The C firmware's self-test: RPMsg-Lite's API (rpmsg-c, the thumbv7em archive) on both sides of
 * a link inside one Cortex-M4 image under QEMU: a master on link 0 and a remote on link 1 over
 * one shared region, doorbells through a real (software-pended) interrupt whose handler runs the
 * rx callbacks. Covers link-up, the name service, an echo of every payload size 0..496 (copy and
 * zero-copy, queue and callback endpoints), buffer exhaustion and the parameter checks. Prints
 * one line per step and "N passed, M failed" through semihosting; exits 0 only if all passed. */
#include <stdio.h>
#include <string.h>
#include "rpmsg_lite.h"
#include "rpmsg_ns.h"
#include "rpmsg_queue.h"

uint32_t port_now_ms(void);
extern volatile uint32_t port_doorbells, port_isr_while_masked;

#define PAYLOAD ((uint32_t)RL_BUFFER_PAYLOAD_SIZE)
#define SHM_LEN 4096u

static uint8_t shm[SHM_LEN] __attribute__((aligned(8)));
static struct rpmsg_lite_instance m_ctx, r_ctx;
static struct rpmsg_lite_ept_static_context m_ept_ctx, r_ept_ctx, spare_ctx;
static rpmsg_ns_static_context ns_ctx;
static uint8_t q_storage[2 * RL_BUFFER_COUNT * sizeof(rpmsg_queue_rx_cb_data_t)];
static rpmsg_static_queue_ctxt q_ctx;

static int passed, failed;
static void check(int ok, const char *what)
{
    if (ok)
        passed++;
    else
        failed++;
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
}

/* The remote's echo service: its callback (interrupt context) keeps each message. */
struct held
{
    void *data;
    uint32_t len, src;
};
static struct held held_q[8];
static volatile uint32_t held_head, held_tail;
static volatile uint32_t remote_cb_in_isr = 1;

static int32_t remote_cb(void *payload, uint32_t len, uint32_t src, void *priv)
{
    (void)priv;
    remote_cb_in_isr &= (uint32_t)platform_in_isr();
    if (held_tail - held_head >= 8u)
        return RL_RELEASE;
    held_q[held_tail % 8u] = (struct held){payload, len, src};
    held_tail++;
    return RL_HOLD;
}

/* Echoes what the remote holds, zero-copy; returns -1 on an error. */
static int remote_service(struct rpmsg_lite_instance *r, struct rpmsg_lite_endpoint *ep)
{
    while (held_head != held_tail)
    {
        struct held m = held_q[held_head % 8u];
        uint32_t cap = 0;
        void *tx = rpmsg_lite_alloc_tx_buffer(r, &cap, RL_DONT_BLOCK);
        if (tx == RL_NULL)
            return 0; /* later */
        memcpy(tx, m.data, m.len);
        if (rpmsg_lite_send_nocopy(r, ep, m.src, tx, m.len) != RL_SUCCESS)
            return -1;
        if (rpmsg_lite_release_rx_buffer(r, m.data) != RL_SUCCESS)
            return -1;
        held_head++;
    }
    return 0;
}

static volatile uint32_t echo_addr;
static void ns_cb(uint32_t new_ept, const char *name, uint32_t flags, void *user)
{
    (void)user;
    if (flags == RL_NS_CREATE && strcmp(name, "rpmsg-echo") == 0)
        echo_addr = new_ept;
}

int main(void)
{
    static uint8_t out[PAYLOAD], in[PAYLOAD];
    char data[4] = "abc";
    printf("rpmsg-c self-test on a Cortex-M4 (RPMsg-Lite API, static, %u buffers of %u bytes)\n",
           (unsigned)RL_BUFFER_COUNT, (unsigned)PAYLOAD);

    struct rpmsg_lite_instance *m = rpmsg_lite_master_init(shm, SHM_LEN, 0, RL_NO_FLAGS, &m_ctx);
    check(m == &m_ctx && rpmsg_lite_is_link_up(m) == 1, "master init on link 0: up at once");
    struct rpmsg_lite_instance *r = rpmsg_lite_remote_init(shm, 1, RL_C_LATE_REMOTE, &r_ctx);
    check(r == &r_ctx, "remote init on link 1");
    check(rpmsg_lite_wait_for_link_up(r, 1000) == 1, "remote link-up (the master kicked before it listened)");
    if (m == RL_NULL || r == RL_NULL)
        return 1;

    rpmsg_ns_handle ns = rpmsg_ns_bind(m, ns_cb, RL_NULL, &ns_ctx);
    rpmsg_queue_handle q = rpmsg_queue_create(m, q_storage, &q_ctx);
    struct rpmsg_lite_endpoint *mep = rpmsg_lite_create_ept(m, RL_ADDR_ANY, rpmsg_queue_rx_cb, q, &m_ept_ctx);
    struct rpmsg_lite_endpoint *rep = rpmsg_lite_create_ept(r, 30, remote_cb, RL_NULL, &r_ept_ctx);
    check(ns != RL_NULL && q != RL_NULL && mep != RL_NULL && rep != RL_NULL && rep->addr == 30,
          "name service, queue, endpoints");
    check(rpmsg_ns_announce(r, rep, "rpmsg-echo", RL_NS_CREATE) == RL_SUCCESS, "remote announces rpmsg-echo");
    uint32_t t0 = port_now_ms();
    while (echo_addr == 0 && port_now_ms() - t0 < 1000)
        env_sleep_msec(1);
    check(echo_addr == 30, "master's name-service callback saw it (in the doorbell interrupt)");

    /* Echo of every payload size. */
    int bad = 0;
    for (uint32_t n = 0; n <= PAYLOAD && !bad; n++)
    {
        uint32_t src = 0, len = 0;
        for (uint32_t k = 0; k < n; k++)
            out[k] = (uint8_t)(n + 3 * k);
        if (n % 2 == 0)
        {
            bad |= rpmsg_lite_send(m, mep, echo_addr, (char *)out, n, 100) != RL_SUCCESS;
        }
        else
        {
            uint32_t cap = 0;
            void *tx = rpmsg_lite_alloc_tx_buffer(m, &cap, 100);
            bad |= tx == RL_NULL || cap != PAYLOAD;
            if (!bad)
            {
                memcpy(tx, out, n);
                bad |= rpmsg_lite_send_nocopy(m, mep, echo_addr, tx, n) != RL_SUCCESS;
            }
        }
        int32_t got = RL_ERR_NO_BUFF;
        t0 = port_now_ms();
        while (!bad && got != RL_SUCCESS && port_now_ms() - t0 < 1000)
        {
            bad |= remote_service(r, rep) != 0;
            if (n % 2 == 0)
            {
                got = rpmsg_queue_recv(m, q, &src, (char *)in, PAYLOAD, &len, RL_DONT_BLOCK);
                if (got == RL_SUCCESS)
                    bad |= len != n || src != 30 || memcmp(in, out, n) != 0;
            }
            else
            {
                char *p = RL_NULL;
                got = rpmsg_queue_recv_nocopy(m, q, &src, &p, &len, RL_DONT_BLOCK);
                if (got == RL_SUCCESS)
                {
                    bad |= len != n || memcmp(p, out, n) != 0;
                    bad |= rpmsg_queue_nocopy_free(m, p) != RL_SUCCESS;
                    bad |= rpmsg_queue_nocopy_free(m, p) != RL_ERR_PARAM;
                }
            }
            if (got != RL_SUCCESS)
                env_sleep_msec(1);
        }
        if (got != RL_SUCCESS || bad)
        {
            printf("     echo of %u bytes failed (%d)\n", (unsigned)n, (int)got);
            bad = 1;
        }
    }
    check(!bad, "echo of every size 0..496: copy and zero-copy, both ways");
    check(remote_cb_in_isr == 1, "rx callbacks ran in interrupt context");
    check(port_isr_while_masked == 0, "no doorbell handled while the library masked it");

    /* Buffers run out when the peer does not return them. */
    uint32_t sent = 0;
    while (rpmsg_lite_send(m, mep, 30, data, 4, RL_DONT_BLOCK) == RL_SUCCESS)
        sent++;
    check(sent == RL_BUFFER_COUNT, "master: RL_BUFFER_COUNT sends, then none");
    check(rpmsg_lite_send(m, mep, 30, data, 4, 5) == RL_ERR_NO_MEM, "send with a 5 ms timeout: RL_ERR_NO_MEM");
    (void)remote_service(r, rep);
    t0 = port_now_ms();
    uint32_t drained = 0, src = 0, len = 0;
    while (drained < sent && port_now_ms() - t0 < 1000)
    {
        (void)remote_service(r, rep);
        if (rpmsg_queue_recv(m, q, &src, (char *)in, PAYLOAD, &len, RL_DONT_BLOCK) == RL_SUCCESS)
            drained++;
        else
            env_sleep_msec(1);
    }
    check(drained == sent && rpmsg_lite_send(m, mep, 30, data, 4, RL_DONT_BLOCK) == RL_SUCCESS,
          "after the echoes came back, buffers are free again");

    /* Parameter checks. */
    static struct rpmsg_lite_instance zero;
    uint32_t sz = 7;
    check(rpmsg_lite_send(&zero, mep, 30, data, 4, RL_DONT_BLOCK) == RL_NOT_READY, "zeroed instance: RL_NOT_READY");
    check(rpmsg_lite_alloc_tx_buffer(&zero, &sz, RL_DONT_BLOCK) == RL_NULL && sz == 0, "zeroed instance: alloc NULL, size 0");
    check(rpmsg_lite_send(m, rep, 30, data, 4, RL_DONT_BLOCK) == RL_ERR_PARAM, "another instance's endpoint: RL_ERR_PARAM");
    check(rpmsg_lite_send(m, mep, 30, data, PAYLOAD + 1, RL_DONT_BLOCK) == RL_ERR_BUFF_SIZE, "too long: RL_ERR_BUFF_SIZE");
    check(rpmsg_lite_release_rx_buffer(m, shm + 1024) == RL_ERR_PARAM, "releasing a buffer never held: RL_ERR_PARAM");
    check(rpmsg_lite_create_ept(m, 30, remote_cb, RL_NULL, &spare_ctx) != RL_NULL, "address 30 is free on the master");
    check(rpmsg_lite_create_ept(r, 30, remote_cb, RL_NULL, &spare_ctx) == RL_NULL, "address 30 in use on the remote");
    check(rpmsg_lite_destroy_ept(m, &spare_ctx.ept) == RL_SUCCESS &&
              rpmsg_lite_destroy_ept(m, &spare_ctx.ept) == RL_ERR_PARAM,
          "destroy, then destroy again: RL_ERR_PARAM");

    /* Shutdown, both sides, and again. */
    check(rpmsg_lite_destroy_ept(r, rep) == RL_SUCCESS && rpmsg_lite_destroy_ept(m, mep) == RL_SUCCESS &&
              rpmsg_queue_destroy(m, q) == RL_SUCCESS && rpmsg_ns_unbind(m, ns) == RL_SUCCESS,
          "endpoints, queue, name service destroyed");
    check(rpmsg_lite_deinit(r) == RL_SUCCESS && rpmsg_lite_deinit(m) == RL_SUCCESS, "deinit both");
    check(rpmsg_lite_deinit(m) == RL_ERR_PARAM && rpmsg_lite_is_link_up(m) == 0, "deinit twice: RL_ERR_PARAM, link down");
    m = rpmsg_lite_master_init(shm, SHM_LEN, 0, RL_NO_FLAGS, &m_ctx);
    r = rpmsg_lite_remote_init(shm, 1, RL_C_LATE_REMOTE, &r_ctx);
    check(m != RL_NULL && r != RL_NULL && rpmsg_lite_wait_for_link_up(r, 1000) == 1 &&
              rpmsg_lite_deinit(r) == RL_SUCCESS && rpmsg_lite_deinit(m) == RL_SUCCESS,
          "init and deinit again");

    printf("doorbells delivered: %u\n", (unsigned)port_doorbells);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
