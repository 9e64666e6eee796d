/* The test programs' environment and platform layers: a bare-metal style environment on a
 * Linux host, written for these tests (a project keeps its own rpmsg_env_*.c and platform
 * file). The shared memory is rpmsg-rs's shared file; the mailbox is its doorbell socket;
 * doorbells are delivered (env_isr -> virtqueue_notification) whenever the program sleeps
 * through env_sleep_msec or calls host_poll, with platform_in_isr() true meanwhile. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rpmsg_lite.h"
#include "host_port.h"

/* Host block (at the end of the region): offsets from crates/rpmsg-host/src/file.rs. */
#define HB_LEN        4096u
#define HB_VERSION    0x08u
#define HB_LAYOUT     0x0cu
#define HB_BUFFERS    0x10u
#define HB_BUFSIZE    0x14u
#define HB_ALIGN      0x18u
#define HB_DOORBELL   0x1cu
#define HB_REGION_LEN 0x20u
#define HB_PID_DRV    0x28u
#define HB_PID_DEV    0x2cu
#define HB_STATE_DRV  0x30u
#define HB_STATE_DEV  0x34u
#define HB_VRING_SIZE 0x38u

static uint8_t *shm_base;
static size_t shm_len;
static uint8_t *hblock;
static int is_master;
static int sock_fd = -1;
static struct sockaddr_un peer_sa;
static char own_sock[108];
static void *isr_table[RL_PLATFORM_MAX_ISR_COUNT];
static int masked[RL_PLATFORM_MAX_ISR_COUNT];
static int in_isr;
unsigned long host_doorbells_sent, host_doorbells_delivered;
int host_isr_while_masked;

static volatile uint32_t *hb_word(uint32_t off)
{
    return (volatile uint32_t *)(hblock + off);
}

uint64_t host_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t round_up(uint32_t v, uint32_t a)
{
    return (v + a - 1u) & ~(a - 1u);
}

/* RPMsg-Lite's computed vring slot for n buffers and alignment a. */
static uint32_t vring_slot(uint32_t n, uint32_t a)
{
    return round_up(16u * n, a) + round_up(4u + 2u * n + 2u, a) + round_up(4u + 8u * n + 2u, a);
}

static void die(const char *what)
{
    fprintf(stderr, "host_port: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* SOCKDIR/rpmsg-NAME.SIDE.sock into a sun_path (108 bytes). */
static void sock_path(char *out, const char *dir, const char *name, const char *side)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s/rpmsg-%s.%s.sock", dir, name, side);
    if (n < 0 || n >= 108)
    {
        fprintf(stderr, "host_port: socket path too long: %s\n", buf);
        exit(2);
    }
    memcpy(out, buf, (size_t)n + 1u);
}

void *host_open(int master, const char *path, const char *sockdir, size_t *len)
{
    const uint32_t count = (uint32_t)RL_BUFFER_COUNT;
    const uint32_t bsize = round_up((uint32_t)RL_BUFFER_PAYLOAD_SIZE + 16u, 4u);
    const uint32_t slot = vring_slot(count, VRING_ALIGN);
    const size_t need = round_up(2u * slot, 4u) + 2u * count * bsize;
    char tmp[512], name[256];
    int fd;

    is_master = master;
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(name, sizeof name, "%s", basename(tmp));
    sock_path(own_sock, sockdir, name, master ? "driver" : "device");
    peer_sa.sun_family = AF_UNIX;
    sock_path(peer_sa.sun_path, sockdir, name, master ? "device" : "driver");

    if (master)
    {
        shm_len = (need + 4095u) & ~(size_t)4095u;
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)(shm_len + HB_LEN)) != 0)
            die("create shared file");
        shm_base = mmap(NULL, shm_len + HB_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (shm_base == MAP_FAILED)
            die("mmap");
        hblock = shm_base + shm_len;
        memcpy(hblock, "rpmsgHB1", 8);
        *hb_word(HB_VERSION) = 2;
        *hb_word(HB_LAYOUT) = 1;
        *hb_word(HB_BUFFERS) = count;
        *hb_word(HB_BUFSIZE) = bsize;
        *hb_word(HB_ALIGN) = VRING_ALIGN;
        *hb_word(HB_DOORBELL) = 1;
        *(volatile uint64_t *)(hblock + HB_REGION_LEN) = shm_len;
        *hb_word(HB_VRING_SIZE) = 0;
        *hb_word(HB_PID_DRV) = (uint32_t)getpid();
        if (rename(tmp, path) != 0)
            die("rename shared file");
    }
    else
    {
        struct stat st;
        uint64_t t0 = host_now_ms();
        while ((fd = open(path, O_RDWR)) < 0)
        {
            if (host_now_ms() - t0 > 60000u)
                die("open shared file");
            usleep(1000);
        }
        if (fstat(fd, &st) != 0 || (size_t)st.st_size <= HB_LEN)
            die("shared file size");
        shm_len = (size_t)st.st_size - HB_LEN;
        shm_base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (shm_base == MAP_FAILED)
            die("mmap");
        hblock = shm_base + shm_len;
        if (memcmp(hblock, "rpmsgHB1", 8) != 0 || *hb_word(HB_LAYOUT) != 1)
        {
            fprintf(stderr, "host_port: %s is not an RPMsg-Lite layout shared file\n", path);
            exit(2);
        }
        if (*hb_word(HB_BUFFERS) != count || *hb_word(HB_BUFSIZE) != bsize || *hb_word(HB_ALIGN) != VRING_ALIGN ||
            (*hb_word(HB_VRING_SIZE) != 0 && *hb_word(HB_VRING_SIZE) != slot))
        {
            fprintf(stderr,
                    "host_port: the file's geometry (%u buffers of %u bytes, align %#x) is not this build's "
                    "(RL_BUFFER_COUNT %u, buffer %u bytes, VRING_ALIGN %#x)\n",
                    *hb_word(HB_BUFFERS), *hb_word(HB_BUFSIZE), *hb_word(HB_ALIGN), count, bsize, VRING_ALIGN);
            exit(2);
        }
        *hb_word(HB_PID_DEV) = (uint32_t)getpid();
    }
    close(fd);

    struct sockaddr_un own = {.sun_family = AF_UNIX};
    snprintf(own.sun_path, sizeof own.sun_path, "%s", own_sock);
    sock_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    unlink(own_sock);
    if (sock_fd < 0 || bind(sock_fd, (struct sockaddr *)&own, sizeof own) != 0)
        die("bind doorbell socket");
    *hb_word(master ? HB_STATE_DRV : HB_STATE_DEV) = 1;
    *len = shm_len;
    return shm_base;
}

volatile uint32_t *host_scratch(uint32_t off)
{
    return hb_word(0x300u + (off & 0xfcu));
}

int host_peer_closed(void)
{
    return *hb_word(is_master ? HB_STATE_DEV : HB_STATE_DRV) == 2;
}

void host_close(void)
{
    if (hblock != NULL)
        *hb_word(is_master ? HB_STATE_DRV : HB_STATE_DEV) = 2;
    if (sock_fd >= 0)
        close(sock_fd);
    unlink(own_sock);
}

void host_poll(void)
{
    uint8_t b[16];
    ssize_t n;
    if (sock_fd < 0 || in_isr)
        return;
    while ((n = recv(sock_fd, b, sizeof b, MSG_DONTWAIT)) >= 0)
    {
        uint32_t id;
        if (n != 4)
            continue;
        id = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if (id >= RL_PLATFORM_MAX_ISR_COUNT)
            continue;
        if (masked[id] != 0)
            host_isr_while_masked = 1;
        in_isr = 1;
        env_isr(id);
        in_isr = 0;
        host_doorbells_delivered++;
    }
}

/* ---- platform layer ---- */

int32_t platform_init_interrupt(uint32_t vector_id, void *isr_data)
{
    if (vector_id >= RL_PLATFORM_MAX_ISR_COUNT)
        return -1;
    env_register_isr(vector_id, isr_data);
    return 0;
}

int32_t platform_deinit_interrupt(uint32_t vector_id)
{
    env_unregister_isr(vector_id);
    return 0;
}

int32_t platform_interrupt_enable(uint32_t vector_id)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT && masked[vector_id] > 0)
        masked[vector_id]--;
    return 0;
}

int32_t platform_interrupt_disable(uint32_t vector_id)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT)
        masked[vector_id]++;
    return 0;
}

int32_t platform_in_isr(void)
{
    return in_isr;
}

void platform_notify(uint32_t vector_id)
{
    uint8_t b[4] = {(uint8_t)vector_id, (uint8_t)(vector_id >> 8), (uint8_t)(vector_id >> 16),
                    (uint8_t)(vector_id >> 24)};
    host_doorbells_sent++;
    (void)sendto(sock_fd, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&peer_sa, sizeof peer_sa);
}

void platform_time_delay(uint32_t num_msec)
{
    uint64_t end = host_now_ms() + num_msec;
    do
    {
        host_poll();
        usleep(100);
    } while (host_now_ms() < end);
}

uintptr_t platform_vatopa(void *addr)
{
    return (uintptr_t)((uint8_t *)addr - shm_base);
}

void *platform_patova(uintptr_t addr)
{
    return shm_base + addr;
}

int32_t platform_init(void)
{
    return 0;
}

int32_t platform_deinit(void)
{
    return 0;
}

/* ---- environment layer (bare-metal style) ---- */

static int env_users;

int32_t env_init(void)
{
    if (env_users++ == 0)
        return platform_init();
    return 0;
}

int32_t env_deinit(void)
{
    if (env_users > 0 && --env_users == 0)
        return platform_deinit();
    return 0;
}

void *env_allocate_memory(uint32_t size)
{
    return malloc(size);
}

void env_free_memory(void *ptr)
{
    free(ptr);
}

void env_memset(void *ptr, int32_t value, uint32_t size)
{
    memset(ptr, value, size);
}

void env_memcpy(void *dst, void const *src, uint32_t len)
{
    memcpy(dst, src, len);
}

int32_t env_strcmp(const char *dst, const char *src)
{
    return strcmp(dst, src);
}

void env_strncpy(char *dest, const char *src, uint32_t len)
{
    strncpy(dest, src, len);
}

int32_t env_strncmp(char *dest, const char *src, uint32_t len)
{
    return strncmp(dest, src, len);
}

void env_mb(void)
{
    __sync_synchronize();
}

void env_rmb(void)
{
    __sync_synchronize();
}

void env_wmb(void)
{
    __sync_synchronize();
}

uint32_t env_map_vatopa(void *address)
{
    return (uint32_t)platform_vatopa(address);
}

void *env_map_patova(uint32_t address)
{
    return platform_patova(address);
}

/* Mutexes: one context, so a flag that must never be found taken. */
#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
int32_t env_create_mutex(void **lock, int32_t count, void *context)
{
    LOCK_STATIC_CONTEXT *c = (LOCK_STATIC_CONTEXT *)context;
    (void)count;
    if (c == NULL)
        return -1;
    c->locked = 0;
    c->magic = 0x4d555458u;
    *lock = &c->locked;
    return 0;
}
#else
static uint32_t dynamic_locks[8];
static int dynamic_used;

int32_t env_create_mutex(void **lock, int32_t count)
{
    (void)count;
    if (dynamic_used >= 8)
        return -1;
    dynamic_locks[dynamic_used] = 0;
    *lock = &dynamic_locks[dynamic_used++];
    return 0;
}
#endif

void env_delete_mutex(void *lock)
{
    (void)lock;
}

void env_lock_mutex(void *lock)
{
    uint32_t *l = (uint32_t *)lock;
    if (*l != 0)
    {
        fprintf(stderr, "host_port: env_lock_mutex on a mutex already held (one context)\n");
        abort();
    }
    *l = 1;
}

void env_unlock_mutex(void *lock)
{
    *(uint32_t *)lock = 0;
}

void env_sleep_msec(uint32_t num_msec)
{
    platform_time_delay(num_msec);
}

void env_register_isr(uint32_t vector_id, void *data)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT)
        isr_table[vector_id] = data;
}

void env_unregister_isr(uint32_t vector_id)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT)
        isr_table[vector_id] = NULL;
}

void env_enable_interrupt(uint32_t vector_id)
{
    (void)platform_interrupt_enable(vector_id);
}

void env_disable_interrupt(uint32_t vector_id)
{
    (void)platform_interrupt_disable(vector_id);
}

void env_map_memory(uint32_t pa, uint32_t va, uint32_t size, uint32_t flags)
{
    (void)pa;
    (void)va;
    (void)size;
    (void)flags;
}

void env_disable_cache(void)
{
}

void env_cache_flush(void *data, uint32_t len)
{
    (void)data;
    (void)len;
}

void env_cache_invalidate(void *data, uint32_t len)
{
    (void)data;
    (void)len;
}

uint64_t env_get_timestamp(void)
{
    return host_now_ms();
}

void env_isr(uint32_t vector)
{
    if (vector < RL_PLATFORM_MAX_ISR_COUNT)
        virtqueue_notification((struct virtqueue *)isr_table[vector]);
}

uint32_t env_wait_for_link_up(volatile uint32_t *link_state, uint32_t link_id, uint32_t timeout_ms)
{
    uint32_t waited = 0;
    (void)link_id;
    while (*link_state != 1u)
    {
        if (timeout_ms != (uint32_t)RL_BLOCK && waited >= timeout_ms)
            return 0;
        env_sleep_msec(RL_MS_PER_INTERVAL);
        waited += RL_MS_PER_INTERVAL;
    }
    return 1;
}

void env_tx_callback(uint32_t link_id)
{
    (void)link_id;
}

/* Queues: a ring of fixed-size elements; a get waits in env_sleep_msec steps (doorbells are
 * delivered meanwhile, so the rx callback fills it). */
struct host_queue
{
    uint32_t head, tail, length, element_size;
    uint8_t *storage;
};

#if defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1)
int32_t env_create_queue(void **queue, int32_t length, int32_t element_size, uint8_t *queue_static_storage,
                         rpmsg_static_queue_ctxt *queue_static_context)
{
    struct host_queue *q = (struct host_queue *)queue_static_context;
    if (q == NULL || queue_static_storage == NULL || length <= 0)
        return -1;
    q->storage = queue_static_storage;
#else
int32_t env_create_queue(void **queue, int32_t length, int32_t element_size)
{
    struct host_queue *q = calloc(1, sizeof *q);
    if (q == NULL || length <= 0)
        return -1;
    q->storage = calloc((size_t)length, (size_t)element_size);
#endif
    q->head = q->tail = 0;
    q->length = (uint32_t)length;
    q->element_size = (uint32_t)element_size;
    *queue = q;
    return 0;
}

void env_delete_queue(void *queue)
{
#if !(defined(RL_USE_STATIC_API) && (RL_USE_STATIC_API == 1))
    struct host_queue *q = queue;
    free(q->storage);
    free(q);
#else
    (void)queue;
#endif
}

int32_t env_put_queue(void *queue, void *msg, uintptr_t timeout_ms)
{
    struct host_queue *q = queue;
    (void)timeout_ms;
    if (q->tail - q->head >= q->length)
        return 0;
    memcpy(q->storage + (size_t)(q->tail % q->length) * q->element_size, msg, q->element_size);
    q->tail++;
    return 1;
}

int32_t env_get_queue(void *queue, void *msg, uintptr_t timeout_ms)
{
    struct host_queue *q = queue;
    uintptr_t waited = 0;
    for (;;)
    {
        host_poll();
        if (q->tail != q->head)
        {
            memcpy(msg, q->storage + (size_t)(q->head % q->length) * q->element_size, q->element_size);
            q->head++;
            return 1;
        }
        if (timeout_ms != RL_BLOCK && waited >= timeout_ms)
            return 0;
        env_sleep_msec(RL_MS_PER_INTERVAL);
        waited += RL_MS_PER_INTERVAL;
    }
}

int32_t env_get_current_queue_size(void *queue)
{
    struct host_queue *q = queue;
    return (int32_t)(q->tail - q->head);
}
