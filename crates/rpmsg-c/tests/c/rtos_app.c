/* A C program on rpmsg-c's NXP RPMsg RTOS layer (rpmsg_rtos.h), one side of a two-process link
 * over rpmsg-rs's shared file (host_port.c). Built by tests/c_programs.rs.
 *
 *   rtos_app master FILE SOCKDIR [--count N]
 *       rpmsg_rtos_init as master (waits for the remote's default channel), then N round trips
 *       on it, every payload size in turn: even ones rpmsg_rtos_send + rpmsg_rtos_recv, odd
 *       ones zero-copy both ways. Then the other calls' checks, and rpmsg_rtos_deinit.
 *   rtos_app remote FILE SOCKDIR
 *       rpmsg_rtos_init as remote (announces the default channel), echoes every message on it
 *       zero-copy until the master withdraws the channel (its deinit) or its side closes.
 * Prints "rtos_app: ok ..." and exits 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpmsg_rtos.h"
#include "host_port.h"

#define PAYLOAD ((int)RL_BUFFER_PAYLOAD_SIZE)

static void *shm_base;
static size_t shm_len;
static int failures;

#define CHECK(cond)                                                                   \
    do                                                                                \
    {                                                                                 \
        if (!(cond))                                                                  \
        {                                                                             \
            fprintf(stderr, "rtos_app: check failed at line %d: %s\n", __LINE__, #cond); \
            failures++;                                                               \
        }                                                                             \
    } while (0)

void *rpmsg_rtos_shmem(int dev_id, size_t *len)
{
    if (dev_id != 0)
        return NULL;
    *len = shm_len;
    return shm_base;
}

static int run_master(long count)
{
    static uint8_t out[PAYLOAD + 1], in[PAYLOAD + 1];
    struct remote_device *rdev = NULL;
    struct rpmsg_channel *ch = NULL;
    int r = rpmsg_rtos_init(0, &rdev, RPMSG_MASTER, &ch);
    if (r != RL_SUCCESS || rdev == NULL || ch == NULL)
    {
        fprintf(stderr, "rtos_app: rpmsg_rtos_init: %d\n", r);
        return 3;
    }
    CHECK(ch->dst != RL_ADDR_ANY && ch->rp_ept != NULL && ch->src == ch->rp_ept->addr);
    struct rpmsg_endpoint *ep = ch->rp_ept;
    for (long i = 0; i < count; i++)
    {
        int n = (int)(i % (PAYLOAD + 1)), len = -1;
        unsigned long src = 0;
        for (int k = 0; k < n; k++)
            out[k] = (uint8_t)(i * 3 + k);
        if (i % 2 == 0)
        {
            r = rpmsg_rtos_send(ep, out, n, ch->dst);
            if (r == RL_SUCCESS)
                r = rpmsg_rtos_recv(ep, in, &len, (int)sizeof in, &src, 10000);
            if (r != RL_SUCCESS || len != n || src != ch->dst || memcmp(in, out, (size_t)n) != 0)
            {
                fprintf(stderr, "rtos_app: round trip %ld: %d len %d (sent %d)\n", i, r, len, n);
                return 5;
            }
        }
        else
        {
            unsigned long cap = 0;
            void *tx = rpmsg_rtos_alloc_tx_buffer(ep, &cap);
            void *rx = NULL;
            if (tx == NULL || cap != (unsigned long)PAYLOAD)
            {
                fprintf(stderr, "rtos_app: alloc_tx_buffer %ld: cap %lu\n", i, cap);
                return 5;
            }
            memcpy(tx, out, (size_t)n);
            r = rpmsg_rtos_send_nocopy(ep, tx, n, ch->dst);
            if (r == RL_SUCCESS)
                r = rpmsg_rtos_recv_nocopy(ep, &rx, &len, &src, -1);
            if (r != RL_SUCCESS || len != n || memcmp(rx, out, (size_t)n) != 0)
            {
                fprintf(stderr, "rtos_app: zero-copy round trip %ld: %d len %d (sent %d)\n", i, r, len, n);
                return 5;
            }
            CHECK(rpmsg_rtos_recv_nocopy_free(ep, rx) == RL_SUCCESS);
            CHECK(rpmsg_rtos_recv_nocopy_free(ep, rx) == RL_ERR_PARAM);
        }
    }
    /* A second endpoint: a receive that times out, an unsent buffer given back. */
    struct rpmsg_endpoint *e2 = rpmsg_rtos_create_ept(ch, RL_ADDR_ANY);
    CHECK(e2 != NULL && e2->addr != ep->addr);
    if (e2 != NULL)
    {
        int len = 0;
        unsigned long src = 0, cap = 0;
        uint64_t t = host_now_ms();
        CHECK(rpmsg_rtos_recv(e2, in, &len, (int)sizeof in, &src, 25) == RL_ERR_NO_BUFF);
        CHECK(host_now_ms() - t >= 25);
        CHECK(rpmsg_rtos_recv(e2, in, &len, (int)sizeof in, &src, 0) == RL_ERR_NO_BUFF);
        void *tx = rpmsg_rtos_alloc_tx_buffer(e2, &cap);
        CHECK(tx != NULL && cap == (unsigned long)PAYLOAD);
        CHECK(rpmsg_rtos_recv_nocopy_free(e2, tx) == RL_SUCCESS);
        CHECK(rpmsg_rtos_recv_nocopy_free(e2, tx) == RL_ERR_PARAM);
        CHECK(rpmsg_rtos_send_nocopy(e2, tx, 4, ch->dst) == RL_ERR_PARAM);
        CHECK(rpmsg_rtos_send(e2, out, PAYLOAD + 1, ch->dst) == RL_ERR_BUFF_SIZE);
        rpmsg_rtos_destroy_ept(e2);
    }
    CHECK(rpmsg_rtos_create_ept(NULL, 5) == NULL);
    CHECK(rpmsg_rtos_recv(NULL, in, NULL, 4, NULL, 0) == RL_ERR_PARAM);
    CHECK(rpmsg_rtos_send(NULL, out, 4, 1) == RL_ERR_PARAM);
    CHECK(rpmsg_rtos_recv_nocopy(ep, NULL, NULL, NULL, 0) == RL_ERR_PARAM);
    rpmsg_rtos_deinit(rdev);
    CHECK(!host_isr_while_masked);
    printf("rtos_app: ok master %ld round trips; doorbells sent %lu delivered %lu\n", count, host_doorbells_sent,
           host_doorbells_delivered);
    return failures ? 5 : 0;
}

static int run_remote(void)
{
    struct remote_device *rdev = NULL;
    struct rpmsg_channel *ch = NULL;
    unsigned long echoed = 0;
    const char *how = "the other side closed";
    int r = rpmsg_rtos_init(0, &rdev, RPMSG_REMOTE, &ch);
    if (r != RL_SUCCESS)
    {
        fprintf(stderr, "rtos_app: rpmsg_rtos_init: %d\n", r);
        return 3;
    }
    struct rpmsg_endpoint *ep = ch->rp_ept;
    for (;;)
    {
        void *rx = NULL;
        int len = 0;
        unsigned long src = 0, cap = 0;
        r = rpmsg_rtos_recv_nocopy(ep, &rx, &len, &src, 100);
        if (r == RL_NOT_READY)
        {
            how = "the master withdrew the channel";
            uint8_t b[4] = {0};
            CHECK(ch->closed);
            CHECK(rpmsg_rtos_send(ep, b, 4, ch->dst) == RL_NOT_READY);
            CHECK(rpmsg_rtos_recv_nocopy(ep, &rx, &len, &src, 0) == RL_NOT_READY);
            break;
        }
        if (r == RL_ERR_NO_BUFF)
        {
            if (host_peer_closed())
                break;
            continue;
        }
        if (r != RL_SUCCESS)
        {
            fprintf(stderr, "rtos_app: recv_nocopy: %d\n", r);
            return 4;
        }
        CHECK(ch->dst == src);
        void *tx = rpmsg_rtos_alloc_tx_buffer(ep, &cap);
        if (tx == NULL || cap < (unsigned long)len)
        {
            fprintf(stderr, "rtos_app: alloc_tx_buffer failed after %lu\n", echoed);
            return 4;
        }
        memcpy(tx, rx, (size_t)len);
        CHECK(rpmsg_rtos_recv_nocopy_free(ep, rx) == RL_SUCCESS);
        r = rpmsg_rtos_send_nocopy(ep, tx, len, src);
        if (r != RL_SUCCESS)
        {
            fprintf(stderr, "rtos_app: send_nocopy: %d after %lu\n", r, echoed);
            return 4;
        }
        echoed++;
    }
    rpmsg_rtos_deinit(rdev);
    CHECK(!host_isr_while_masked);
    printf("rtos_app: ok remote echoed %lu messages, then %s\n", echoed, how);
    return failures ? 5 : 0;
}

int main(int argc, char **argv)
{
    long count = (long)PAYLOAD + 1;
    int rc;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 4)
    {
        fprintf(stderr, "usage: rtos_app master|remote FILE SOCKDIR [--count N]\n");
        return 2;
    }
    if (argc >= 6 && strcmp(argv[4], "--count") == 0)
        count = strtol(argv[5], NULL, 0);
    int master = strcmp(argv[1], "master") == 0;
    shm_base = host_open(master, argv[2], argv[3], &shm_len);
    rc = master ? run_master(count) : run_remote();
    host_close();
    return rc;
}
