/* The C firmware's environment and platform layers (bare metal, written for this firmware; a
 * project keeps its own). Doorbells: platform_notify marks the other link's vector pending and
 * pends external interrupt 0, whose handler calls env_isr for each pending vector; masking a
 * vector (env_disable_interrupt) disables that interrupt in the NVIC, counted. Time: SysTick
 * at 1 kHz. */
#include <stdint.h>
#include <string.h>
#include "rpmsg_lite.h"

#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ICER0 (*(volatile uint32_t *)0xE000E180u)
#define NVIC_ISPR0 (*(volatile uint32_t *)0xE000E200u)
#define SYST_CSR   (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR   (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR   (*(volatile uint32_t *)0xE000E018u)

static void *isr_data[RL_PLATFORM_MAX_ISR_COUNT];
static volatile uint32_t pending;   /* vectors rung, not yet delivered */
static volatile uint32_t mask_count; /* nested env_disable_interrupt calls */
static volatile uint32_t ticks;
volatile uint32_t port_doorbells, port_isr_while_masked;

static uint32_t irq_save(void)
{
    uint32_t p;
    __asm volatile("mrs %0, primask\n cpsid i" : "=r"(p) : : "memory");
    return p;
}

static void irq_restore(uint32_t p)
{
    __asm volatile("msr primask, %0" : : "r"(p) : "memory");
}

void systick_irq(void)
{
    ticks++;
}

uint32_t port_now_ms(void)
{
    return ticks;
}

void doorbell_irq(void)
{
    uint32_t p = irq_save();
    uint32_t v = pending;
    pending = 0;
    irq_restore(p);
    if (mask_count != 0)
        port_isr_while_masked++;
    for (uint32_t i = 0; i < RL_PLATFORM_MAX_ISR_COUNT; i++)
    {
        if ((v & (1u << i)) != 0)
        {
            port_doorbells++;
            env_isr(i);
        }
    }
}

/* ---- platform ---- */

int32_t platform_init(void)
{
    static int started;
    if (!started)
    {
        started = 1;
        SYST_RVR = 25000000u / 1000u - 1u;
        SYST_CVR = 0;
        SYST_CSR = 7u; /* processor clock, interrupt, enable */
        NVIC_ISER0 = 1u;
    }
    return 0;
}

int32_t platform_deinit(void)
{
    return 0;
}

int32_t platform_init_interrupt(uint32_t vector_id, void *data)
{
    if (vector_id >= RL_PLATFORM_MAX_ISR_COUNT)
        return -1;
    env_register_isr(vector_id, data);
    return 0;
}

int32_t platform_deinit_interrupt(uint32_t vector_id)
{
    env_unregister_isr(vector_id);
    return 0;
}

int32_t platform_interrupt_enable(uint32_t vector_id)
{
    uint32_t p = irq_save();
    (void)vector_id;
    if (mask_count > 0 && --mask_count == 0)
        NVIC_ISER0 = 1u;
    irq_restore(p);
    return 0;
}

int32_t platform_interrupt_disable(uint32_t vector_id)
{
    uint32_t p = irq_save();
    (void)vector_id;
    if (mask_count++ == 0)
        NVIC_ICER0 = 1u;
    irq_restore(p);
    __asm volatile("dsb\n isb" ::: "memory");
    return 0;
}

int32_t platform_in_isr(void)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    return (ipsr & 0x1FFu) != 0u;
}

void platform_notify(uint32_t vector_id)
{
    uint32_t p = irq_save();
    pending |= 1u << ((vector_id ^ 2u) % RL_PLATFORM_MAX_ISR_COUNT);
    irq_restore(p);
    NVIC_ISPR0 = 1u;
}

void platform_time_delay(uint32_t num_msec)
{
    uint32_t start = ticks;
    while ((uint32_t)(ticks - start) < num_msec)
        __asm volatile("wfi");
}

/* ---- environment (bare metal) ---- */

int32_t env_init(void)
{
    return platform_init();
}

int32_t env_deinit(void)
{
    return 0;
}

void *env_allocate_memory(uint32_t size)
{
    (void)size;
    return 0; /* static API only */
}

void env_free_memory(void *ptr)
{
    (void)ptr;
}

void env_memset(void *ptr, int32_t value, uint32_t size)
{
    memset(ptr, value, size);
}

void env_memcpy(void *dst, void const *src, uint32_t len)
{
    memcpy(dst, src, len);
}

int32_t env_strncmp(char *dest, const char *src, uint32_t len)
{
    return strncmp(dest, src, len);
}

void env_strncpy(char *dest, const char *src, uint32_t len)
{
    strncpy(dest, src, len);
}

uint32_t env_map_vatopa(void *address)
{
    return (uint32_t)(uintptr_t)address;
}

void *env_map_patova(uint32_t address)
{
    return (void *)(uintptr_t)address;
}

int32_t env_create_mutex(void **lock, int32_t count, void *context)
{
    (void)count;
    *lock = context;
    return 0;
}

void env_delete_mutex(void *lock)
{
    (void)lock;
}

void env_lock_mutex(void *lock)
{
    (void)lock; /* one task: nothing to exclude but the interrupt, which the library masks */
}

void env_unlock_mutex(void *lock)
{
    (void)lock;
}

void env_sleep_msec(uint32_t num_msec)
{
    platform_time_delay(num_msec);
}

void env_register_isr(uint32_t vector_id, void *data)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT)
        isr_data[vector_id] = data;
}

void env_unregister_isr(uint32_t vector_id)
{
    if (vector_id < RL_PLATFORM_MAX_ISR_COUNT)
        isr_data[vector_id] = 0;
}

void env_enable_interrupt(uint32_t vector_id)
{
    (void)platform_interrupt_enable(vector_id);
}

void env_disable_interrupt(uint32_t vector_id)
{
    (void)platform_interrupt_disable(vector_id);
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

void env_isr(uint32_t vector)
{
    if (vector < RL_PLATFORM_MAX_ISR_COUNT)
        virtqueue_notification((struct virtqueue *)isr_data[vector]);
}

uint32_t env_wait_for_link_up(volatile uint32_t *link_state, uint32_t link_id, uint32_t timeout_ms)
{
    uint32_t start = ticks;
    (void)link_id;
    while (*link_state != 1u)
    {
        if (timeout_ms != 0xFFFFFFFFu && (uint32_t)(ticks - start) >= timeout_ms)
            return 0;
        env_sleep_msec(1);
    }
    return 1;
}

void env_tx_callback(uint32_t link_id)
{
    (void)link_id;
}

int32_t env_create_queue(void **queue, int32_t length, int32_t element_size, uint8_t *storage,
                         rpmsg_static_queue_ctxt *q)
{
    if (q == 0 || storage == 0 || length <= 0)
        return -1;
    q->head = q->tail = 0;
    q->length = (uint32_t)length;
    q->element_size = (uint32_t)element_size;
    q->storage = storage;
    *queue = q;
    return 0;
}

void env_delete_queue(void *queue)
{
    (void)queue;
}

int32_t env_put_queue(void *queue, void *msg, uintptr_t timeout_ms)
{
    rpmsg_static_queue_ctxt *q = queue;
    (void)timeout_ms;
    if (q->tail - q->head >= q->length)
        return 0;
    memcpy(q->storage + (q->tail % q->length) * q->element_size, msg, q->element_size);
    q->tail++;
    return 1;
}

int32_t env_get_queue(void *queue, void *msg, uintptr_t timeout_ms)
{
    rpmsg_static_queue_ctxt *q = queue;
    uint32_t start = ticks;
    for (;;)
    {
        uint32_t p = irq_save();
        if (q->tail != q->head)
        {
            memcpy(msg, q->storage + (q->head % q->length) * q->element_size, q->element_size);
            q->head++;
            irq_restore(p);
            return 1;
        }
        irq_restore(p);
        if (timeout_ms != (uintptr_t)RL_BLOCK && (uint32_t)(ticks - start) >= timeout_ms)
            return 0;
        env_sleep_msec(1);
    }
}

int32_t env_get_current_queue_size(void *queue)
{
    rpmsg_static_queue_ctxt *q = queue;
    return (int32_t)(q->tail - q->head);
}
