//! How to port rpmsg to an RTOS: an [`Environment`] on the kernel's tick and a binary
//! semaphore, and a [`Platform`] whose mailbox interrupt calls [`Link::handle_notify`].
//!
//! The "kernel" and the "mailbox" below are stand-ins written with std so that the example
//! runs on a PC, but each function has the shape of the RTOS call it stands for, and a comment
//! names the FreeRTOS and the Zephyr call to put there. Two cores run in this process: the
//! "application core" is the driver (RPMsg-Lite's master), the "real-time core" the device
//! (remote); each has its own kernel objects, mailbox and interrupt.
//!
//! ```text
//! cargo run -p rpmsg --example rtos_port --features std
//! ```
//!
//! What goes where in a port:
//!
//! | rpmsg needs | FreeRTOS | Zephyr |
//! |---|---|---|
//! | `Environment::now` | `xTaskGetTickCount()` (extended past its wrap) | `k_uptime_get()` / `k_uptime_ticks()` |
//! | `Environment::wait(deadline)` | `xSemaphoreTake(sem, ticks)` | `k_sem_take(&sem, K_TICKS(ticks))` |
//! | `Environment::wake` | `xSemaphoreGive(sem)` / `xSemaphoreGiveFromISR` | `k_sem_give(&sem)` (ISR-safe) |
//! | `Environment::RawMutex` | `CriticalSectionRawMutex` over `taskENTER_CRITICAL` / `taskENTER_CRITICAL_FROM_ISR` | `CriticalSectionRawMutex` over `irq_lock` / `irq_unlock` |
//! | `Platform::notify` | write the mailbox (NXP MU `MU_TriggerInterrupts`, STM32 `HAL_IPCC_NotifyCPU`) | `ipm_send` / `mbox_send` |
//! | doorbell ISR | the MU/IPCC IRQ handler calls `Link::handle_notify` | the `ipm`/`mbox` callback calls `Link::handle_notify` |
//!
//! The lock is embassy-sync's `CriticalSectionRawMutex`, which takes the `critical-section`
//! crate's implementation. A FreeRTOS firmware provides one with
//! `critical_section::set_impl!` around `taskENTER_CRITICAL_FROM_ISR`/`taskEXIT_CRITICAL_FROM_ISR`
//! (a Cortex-M build can use `cortex-m`'s `critical-section-single-core` feature); Zephyr's
//! Rust support maps it to `irq_lock`. Here the `std` feature supplies std's implementation.
//!
//! A binary semaphore wakes one waiter per give. With several tasks blocked on one link, the
//! others notice their event at the next [`Config::poll_interval`] (1 ms by default); use an
//! event group (`xEventGroupSetBits`) or a condition variable (`k_condvar_broadcast`) instead
//! to wake them all at once.

use rpmsg::port::{CriticalSectionRawMutex, Instant, LinearMap};
use rpmsg::{
    Config, EndpointConfig, Environment, Error, Link, LiteConfig, Platform, Role, SharedRegion,
    Timeout,
};
use std::time::Duration;

/// The RTOS kernel, as far as rpmsg needs one. Each item is implemented with std here.
mod kernel {
    use std::sync::{Condvar, Mutex, OnceLock};
    use std::time::Duration;

    /// `TickType_t` (FreeRTOS) / `k_ticks_t` (Zephyr): a 32-bit tick counter.
    pub(crate) type TickType = u32;
    /// `configTICK_RATE_HZ` / `CONFIG_SYS_CLOCK_TICKS_PER_SEC`.
    pub(crate) const TICK_RATE_HZ: u64 = 1000;
    /// `portMAX_DELAY` / `K_FOREVER`.
    pub(crate) const MAX_DELAY: TickType = TickType::MAX;

    fn boot() -> std::time::Instant {
        static BOOT: OnceLock<std::time::Instant> = OnceLock::new();
        *BOOT.get_or_init(std::time::Instant::now)
    }

    /// `xTaskGetTickCount()` / `k_uptime_ticks()`: ticks since boot, wrapping.
    pub(crate) fn tick_count() -> TickType {
        let ticks = boot().elapsed().as_millis() as u64 * TICK_RATE_HZ / 1000;
        ticks as TickType // wraps like the real counter
    }

    fn ticks_to_duration(ticks: TickType) -> Duration {
        Duration::from_micros(u64::from(ticks) * 1_000_000 / TICK_RATE_HZ)
    }

    /// `vTaskDelay(ticks)` / `k_sleep(K_TICKS(ticks))`.
    pub(crate) fn delay(ticks: TickType) {
        std::thread::sleep(ticks_to_duration(ticks));
    }

    /// `xTaskCreate` / `k_thread_create`.
    pub(crate) fn spawn_task(name: &str, f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(f)
            .expect("task created");
    }

    /// A binary semaphore: `xSemaphoreCreateBinary()` / `K_SEM_DEFINE(sem, 0, 1)`.
    #[derive(Debug)]
    pub(crate) struct BinarySemaphore {
        given: Mutex<bool>,
        cv: Condvar,
    }

    impl BinarySemaphore {
        /// Created empty, as both kernels do.
        pub(crate) const fn new() -> Self {
            Self {
                given: Mutex::new(false),
                cv: Condvar::new(),
            }
        }

        /// `xSemaphoreGive(sem)` (`xSemaphoreGiveFromISR` in an interrupt) / `k_sem_give(&sem)`.
        /// Giving a semaphore that is already given does nothing.
        pub(crate) fn give(&self) {
            *self.given.lock().unwrap() = true;
            self.cv.notify_one();
        }

        /// `xSemaphoreTake(sem, ticks) == pdTRUE` / `k_sem_take(&sem, K_TICKS(ticks)) == 0`:
        /// `true` if it was given within `ticks`.
        pub(crate) fn take(&self, ticks: TickType) -> bool {
            let limit = if ticks == MAX_DELAY {
                Duration::MAX
            } else {
                ticks_to_duration(ticks)
            };
            let g = self.given.lock().unwrap();
            let (mut g, _) = self
                .cv
                .wait_timeout_while(g, limit, |given| !*given)
                .unwrap();
            std::mem::take(&mut *g)
        }
    }
}

/// The inter-core mailbox peripheral (NXP MU, STM32 IPCC, a TI mailbox), one per core: a
/// status register the other core sets bits in, and the interrupt it raises.
mod mailbox {
    use super::kernel::BinarySemaphore;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// One core's mailbox.
    #[derive(Debug)]
    pub(crate) struct Mailbox {
        status: AtomicU32,
        /// Stands for the interrupt line into the NVIC / GIC.
        line: BinarySemaphore,
    }

    impl Mailbox {
        pub(crate) const fn new() -> Self {
            Self {
                status: AtomicU32::new(0),
                line: BinarySemaphore::new(),
            }
        }

        /// What the *other* core does to interrupt us: `MU_TriggerInterrupts(MU, flag)`,
        /// `HAL_IPCC_NotifyCPU(..)`, `ipm_send(..)`.
        pub(crate) fn trigger(&self, id: u32) {
            self.status.fetch_or(1 << (id % 32), Ordering::AcqRel);
            self.line.give();
        }

        /// Reads and clears the status register (write-one-to-clear on real parts).
        pub(crate) fn read_and_clear(&self) -> u32 {
            self.status.swap(0, Ordering::AcqRel)
        }

        /// Stands for the interrupt controller: runs `isr` each time the line is raised. On a
        /// chip the ISR is installed in the vector table (or with `IRQ_CONNECT` on Zephyr)
        /// instead.
        pub(crate) fn attach_isr(&'static self, isr: impl Fn() + Send + 'static) {
            super::kernel::spawn_task("irq", move || {
                loop {
                    if self.line.take(super::kernel::MAX_DELAY) {
                        isr();
                    }
                }
            });
        }
    }
}

use kernel::{BinarySemaphore, TickType};
use mailbox::Mailbox;

/// The environment of one core on the RTOS: the tick for a clock, a binary semaphore to block
/// on and to wake the blocked with.
#[derive(Debug)]
struct RtosEnvironment {
    sem: BinarySemaphore,
    /// The tick count extended to 64 bits: (last 32-bit value seen, wraps so far).
    clock: critical_section::Mutex<core::cell::Cell<(TickType, u64)>>,
}

impl RtosEnvironment {
    const fn new() -> Self {
        Self {
            sem: BinarySemaphore::new(),
            clock: critical_section::Mutex::new(core::cell::Cell::new((0, 0))),
        }
    }

    /// Ticks since boot, past the 32-bit wrap (every 49.7 days at 1 kHz). Needs a look at
    /// least once per wrap period, which every blocked caller gives it.
    fn ticks(&self) -> u64 {
        critical_section::with(|cs| {
            let cell = self.clock.borrow(cs);
            let (last, mut wraps) = cell.get();
            let now = kernel::tick_count();
            if now < last {
                wraps += 1;
            }
            cell.set((now, wraps));
            (wraps << 32) | u64::from(now)
        })
    }
}

impl Environment for RtosEnvironment {
    type RawMutex = CriticalSectionRawMutex;

    fn now(&self) -> Instant {
        Instant(self.ticks() * 1_000_000 / kernel::TICK_RATE_HZ)
    }

    fn wait(&self, deadline: Option<Instant>) {
        let ticks = match deadline {
            None => kernel::MAX_DELAY,
            Some(d) => {
                let left_us = d.0.saturating_sub(self.now().0);
                // Round up, so a wait never ends a tick early and spins.
                let ticks = left_us.div_ceil(1_000_000 / kernel::TICK_RATE_HZ);
                TickType::try_from(ticks).unwrap_or(kernel::MAX_DELAY - 1)
            }
        };
        // Spurious returns are fine: the link looks again and calls `wait` again.
        let _ = self.sem.take(ticks);
    }

    fn wake(&self) {
        // Called from tasks and from the doorbell ISR (xSemaphoreGiveFromISR there).
        self.sem.give();
    }
}

/// The platform of one core: the peer's mailbox to ring, and the address map (both cores see
/// the shared memory at the same address here).
#[derive(Debug)]
struct MailboxPlatform {
    map: LinearMap,
    peer: &'static Mailbox,
}

impl Platform for MailboxPlatform {
    type Map = LinearMap;

    fn address_map(&self) -> &LinearMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        self.peer.trigger(id);
    }

    // With cached shared memory (a Cortex-M7, an A-core with a cacheable mapping), also
    // implement `cache_clean` (`SCB_CleanDCache_by_Addr`, `sys_cache_data_flush_range`) and
    // `cache_invalidate` (`SCB_InvalidateDCache_by_Addr`, `sys_cache_data_invd_range`).
}

type RtosLink = Link<'static, MailboxPlatform, RtosEnvironment, 16>;

/// The shared memory, 8-byte aligned. Firmware declares it as a `static` in the linker section
/// both cores map (and wraps it with `SharedRegion::from_raw`); here it is leaked heap memory.
#[repr(C, align(8))]
struct SharedMemory([u8; LITE.region_len()]);

const LITE: LiteConfig = LiteConfig::new(16, 496, 16);

/// One core's bring-up: the link in a `static` (here leaked), and the mailbox ISR that calls
/// `handle_notify` for each doorbell.
fn bring_up(
    region: SharedRegion<'static>,
    role: Role,
    own: &'static Mailbox,
    peer: &'static Mailbox,
) -> Result<&'static RtosLink, Error> {
    let platform = MailboxPlatform {
        map: LinearMap {
            base: 0x2000_0000, // where both cores see the shared memory
            len: region.len(),
        },
        peer,
    };
    let link: &'static RtosLink = Box::leak(Box::new(Link::new(
        region,
        platform,
        RtosEnvironment::new(),
        Config::lite(role, LITE),
    )?));
    // The doorbell ISR: only moves published buffers into endpoint queues and wakes waiters.
    own.attach_isr(move || {
        let status = own.read_and_clear();
        for id in (0..32).filter(|id| status & (1 << id) != 0) {
            let _ = link.handle_notify(id);
        }
    });
    Ok(link)
}

fn main() -> Result<(), Error> {
    static APP_MAILBOX: Mailbox = Mailbox::new();
    static RT_MAILBOX: Mailbox = Mailbox::new();
    let memory: &'static mut SharedMemory =
        Box::leak(Box::new(SharedMemory([0; LITE.region_len()])));
    let region = SharedRegion::from_slice(&mut memory.0).expect("8-byte aligned");

    // The real-time core (remote): rpmsg_lite_remote_init, an endpoint with a queue, a task
    // that serves it.
    let rt = bring_up(region, Role::Device, &RT_MAILBOX, &APP_MAILBOX)?;
    let service = rt.create_endpoint(
        EndpointConfig::new()
            .name("rpmsg-rtos-demo")?
            .announce(true)
            .queue(4),
    )?;
    rt.start()?;
    let (done_tx, done) = std::sync::mpsc::channel();
    kernel::spawn_task("service", move || {
        let run = || -> Result<u32, Error> {
            // rpmsg_lite_wait_for_link_up(.., RL_BLOCK)
            rt.wait_link_up(Timeout::Forever)?;
            let mut buf = [0u8; 64];
            let mut served = 0;
            loop {
                // rpmsg_queue_recv(.., RL_BLOCK): sleeps on the semaphore until the ISR queues
                // a message and gives it.
                let (n, src) = service.recv(&mut buf, Timeout::Forever)?;
                if &buf[..n] == b"bye" {
                    return Ok(served);
                }
                let sum: u32 = buf[..n].iter().map(|&b| u32::from(b)).sum();
                service.send_to_timeout(src, &sum.to_le_bytes(), Timeout::from_millis(1000))?;
                served += 1;
            }
        };
        let _ = done_tx.send(run());
    });

    // The application core (master): rpmsg_lite_master_init, then a client bound by name.
    kernel::delay(5);
    let app = bring_up(region, Role::Driver, &APP_MAILBOX, &RT_MAILBOX)?;
    let client = app.create_endpoint(EndpointConfig::new().name("rpmsg-rtos-demo")?.queue(4))?;
    app.start()?;
    let t0 = kernel::tick_count();
    let service_addr = loop {
        if let Some(a) = client.dst()? {
            break a;
        }
        if kernel::tick_count().wrapping_sub(t0) > 1000 {
            return Err(Error::Timeout);
        }
        kernel::delay(1);
    };
    println!("application core: \"rpmsg-rtos-demo\" is at address {service_addr}");

    let mut reply = [0u8; 4];
    for round in 0..10u8 {
        let msg = [round; 8];
        client.send_to_timeout(service_addr, &msg, Timeout::from_millis(1000))?;
        let (n, _) = client.recv(&mut reply, Timeout::from_millis(1000))?;
        let sum = u32::from_le_bytes(reply[..n].try_into().map_err(|_| Error::Timeout)?);
        assert_eq!(sum, 8 * u32::from(round));
    }
    client.send_to_timeout(service_addr, b"bye", Timeout::from_millis(1000))?;
    let served = done
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| Error::Timeout)??;
    println!("real-time core: served {served} requests");
    assert_eq!(served, 10);

    // rpmsg_lite_deinit on both cores.
    app.shutdown()?;
    rt.shutdown()?;
    Ok(())
}
