/* The test platform: a Linux process as one core; the shared memory is rpmsg-rs's shared file
 * and the mailbox its doorbell socket (host_port.c). */
#ifndef RPMSG_PLATFORM_H_
#define RPMSG_PLATFORM_H_
#include <stdint.h>

#define VRING_ALIGN (0x10U)
#define RL_PLATFORM_HIGHEST_LINK_ID (0U)
#define RL_PLATFORM_MAX_ISR_COUNT (2U)

int32_t platform_init_interrupt(uint32_t vector_id, void *isr_data);
int32_t platform_deinit_interrupt(uint32_t vector_id);
int32_t platform_interrupt_enable(uint32_t vector_id);
int32_t platform_interrupt_disable(uint32_t vector_id);
int32_t platform_in_isr(void);
void platform_notify(uint32_t vector_id);
void platform_time_delay(uint32_t num_msec);
uintptr_t platform_vatopa(void *addr);
void *platform_patova(uintptr_t addr);
int32_t platform_init(void);
int32_t platform_deinit(void);
#endif
