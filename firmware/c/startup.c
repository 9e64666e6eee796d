/* Start-up for the C firmware on QEMU mps2-an386: the vector table, the reset handler (zeroes
 * .bss, then main) and semihosting exit. The doorbell is external interrupt 0, pended by
 * software (port.c). */
#include <stdint.h>

extern uint32_t __bss_start__, __bss_end__, __stack_top;
int main(void);
void doorbell_irq(void);
void systick_irq(void);
void initialise_monitor_handles(void) __attribute__((weak)); /* newlib's rdimon, when linked */

void semihost_exit(int ok);

static void fault(void)
{
    semihost_exit(0);
}

/* Defaults for images without the port (size_empty). */
__attribute__((weak)) void doorbell_irq(void)
{
}

__attribute__((weak)) void systick_irq(void)
{
}

void reset_handler(void)
{
    for (uint32_t *p = &__bss_start__; p < &__bss_end__; p++)
        *p = 0;
    /* The FPU (the archive is built for hard float). */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb");
    if (initialise_monitor_handles)
        initialise_monitor_handles();
    semihost_exit(main() == 0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16 + 8])(void) = {
    (void (*)(void))(&__stack_top),
    reset_handler,
    fault, /* NMI */
    fault, /* HardFault */
    fault, /* MemManage */
    fault, /* BusFault */
    fault, /* UsageFault */
    0, 0, 0, 0,
    fault, /* SVCall */
    fault, /* DebugMonitor */
    0,
    fault, /* PendSV */
    systick_irq,
    doorbell_irq, /* IRQ 0 */
    fault, fault, fault, fault, fault, fault, fault,
};

/* Semihosting SYS_EXIT: "application exit" (QEMU status 0) or "run-time error" (status 1). */
void semihost_exit(int ok)
{
    register uint32_t r0 __asm("r0") = 0x18u;
    register uint32_t r1 __asm("r1") = ok ? 0x20026u : 0x20023u;
    __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;)
    {
    }
}
