/* The C firmware's platform: two "cores" in one Cortex-M4 image. Link 0 is the master, link 1
 * the remote, over the same shared memory; a doorbell for vector v of one link is delivered to
 * the same queue of the other (v ^ 2) through external interrupt 0. */
#ifndef RPMSG_PLATFORM_H_
#define RPMSG_PLATFORM_H_
#include <stdint.h>
#define VRING_ALIGN (0x10U)
#define RL_PLATFORM_HIGHEST_LINK_ID (1U)
#define RL_PLATFORM_MAX_ISR_COUNT (4U)
int32_t platform_init_interrupt(uint32_t vector_id, void *isr_data);
int32_t platform_deinit_interrupt(uint32_t vector_id);
int32_t platform_interrupt_enable(uint32_t vector_id);
int32_t platform_interrupt_disable(uint32_t vector_id);
int32_t platform_in_isr(void);
void platform_notify(uint32_t vector_id);
void platform_time_delay(uint32_t num_msec);
int32_t platform_init(void);
int32_t platform_deinit(void);
#endif
