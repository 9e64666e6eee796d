//! # rpmsg-c: RPMsg-Lite's C API over the rpmsg core
//!
//! A static library (`librpmsg_c.a`) and the headers in `include/` that give a C project
//! RPMsg-Lite 5.x's public API — `rpmsg_lite_*`, `rpmsg_ns_*`, `rpmsg_queue_*`, with the same
//! names, argument types, return codes, macros and callback contracts — on top of the `rpmsg`
//! crate's [`Link`]. A project swaps libraries by changing its source list (RPMsg-Lite's
//! `rpmsg_lite.c`, `rpmsg_ns.c`, `rpmsg_queue.c`, `virtqueue.c` and `llist.c` give way to our
//! `src/c/rpmsg_c_glue.c`, and the archive is linked) and its include path (our `include/`
//! before RPMsg-Lite's); its `rpmsg_config.h`, environment layer (`rpmsg_env_bm.c`, FreeRTOS,
//! Zephyr, ...) and platform file stay as they are.
//!
//! ## Who does what
//!
//! * **The glue file** (`src/c/rpmsg_c_glue.c`), compiled with the project's `rpmsg_config.h`
//!   and platform header, holds everything that depends on them: the configuration values this
//!   library reads at run time ([`Glue`]: `RL_BUFFER_PAYLOAD_SIZE`, `RL_BUFFER_COUNT`,
//!   `VRING_ALIGN`, `VRING_SIZE`, `RL_MS_PER_INTERVAL`, custom shared-memory configurations),
//!   the calls whose signature `RL_USE_STATIC_API` changes (init, `create_ept`, `ns_bind`,
//!   `queue_create`: they allocate with `env_allocate_memory` or take the caller's context and
//!   forward here), and `rpmsg_queue_*` over the environment's queues, as RPMsg-Lite does.
//! * **This crate** owns the link: every other entry point, the checks at the boundary, and the
//!   interrupt entry `virtqueue_notification`.
//! * **The project's environment and platform layers** are called as RPMsg-Lite's core calls
//!   them: `env_init`/`env_deinit`, `env_create_mutex`/`env_lock_mutex`/..., `env_sleep_msec`
//!   (every timeout is counted in `RL_MS_PER_INTERVAL` sleeps, as RPMsg-Lite counts them),
//!   `env_enable_interrupt`/`env_disable_interrupt`, `env_map_vatopa`/`env_map_patova`,
//!   `env_cache_flush`/`env_cache_invalidate`, `env_wait_for_link_up`/`env_tx_callback`,
//!   `platform_init_interrupt`/`platform_deinit_interrupt`, `platform_notify` and
//!   `platform_in_isr`.
//!
//! ## The interrupt path
//!
//! At init the library registers each of its two virtqueues with
//! `platform_init_interrupt(vq_id, vq)`, exactly as RPMsg-Lite does, so the environment's ISR
//! (`env_isr(vector)` in `rpmsg_env_bm.c`, the FreeRTOS and Zephyr equivalents) finds the
//! `struct virtqueue *` it registered and calls `virtqueue_notification(vq)`. That function is
//! ours: it checks the pointer is a live virtqueue of a live instance and runs
//! [`Link::handle_notify`], which takes what the peer published and calls the endpoints' rx
//! callbacks in that (interrupt) context, as RPMsg-Lite does.
//!
//! ## Locking
//!
//! The link's bookkeeping is guarded by [`IrqLock`]: it masks the doorbell vectors of every live
//! instance with `env_disable_interrupt` while it is held (never while calling out), so the ISR
//! path cannot run inside it. Tasks are kept apart by the instance's environment mutex, which
//! every entry point takes outside interrupt context (`platform_in_isr() == 0`) around its call
//! into the link, as RPMsg-Lite takes `rpmsg_lite_dev->lock`.
//!
//! ## Safety at the boundary
//!
//! Every instance, endpoint, name-service handle and buffer pointer from C is checked before it
//! is used: an instance must carry the live marker this library writes at init (a zeroed or
//! de-initialised one is refused); endpoints, handles and buffers are looked up by address in
//! the instance's own tables before they are dereferenced, so a pointer from another instance,
//! a destroyed endpoint, a buffer released twice or one never handed out are answered with
//! `RL_ERR_PARAM`. Lengths are checked against the buffer size. What cannot be checked: that an
//! instance pointer points to readable memory at all, that `data` points to `size` readable
//! bytes, and that the shared memory stays mapped until `rpmsg_lite_deinit` (RPMsg-Lite has the
//! same contract). No Rust panic crosses into C: the code has no `unwrap` or indexing that can
//! fail on a path C reaches, and every exported function is `extern "C"`, which aborts rather
//! than unwinds if a panic ever reached it.

#![cfg_attr(target_os = "none", no_std)]
#![allow(unsafe_code)]

use core::cell::RefCell;
use core::ffi::{c_char, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use rpmsg::{
    AddressMap, Announcement, Config, EndpointConfig, Environment, Error, HeldRx, Instant, Link,
    LiteConfig, NsHandler, NsKind, Platform, Role, RxBuffer, SharedRegion, Timeout, TxBuffer,
};

// ---------------------------------------------------------------------------------------------
// Return codes and constants (rpmsg_lite.h)
// ---------------------------------------------------------------------------------------------

/// `RL_SUCCESS`.
pub const RL_SUCCESS: i32 = 0;
const RL_ERRORS_BASE: i32 = -5000;
/// `RL_ERR_NO_MEM`: no buffer within the timeout.
pub const RL_ERR_NO_MEM: i32 = RL_ERRORS_BASE - 1;
/// `RL_ERR_BUFF_SIZE`: a payload larger than a buffer.
pub const RL_ERR_BUFF_SIZE: i32 = RL_ERRORS_BASE - 2;
/// `RL_ERR_PARAM`: a pointer, address or length that is not valid here.
pub const RL_ERR_PARAM: i32 = RL_ERRORS_BASE - 3;
/// `RL_NOT_READY`: the link is not up (or went down).
pub const RL_NOT_READY: i32 = RL_ERRORS_BASE - 7;
/// `RL_C_LATE_REMOTE`: a `rpmsg_lite_remote_init` flag of this library: come up at once if the
/// master initialised the shared memory before this remote listened (its kick was missed).
pub const RL_C_LATE_REMOTE: u32 = 0x100;
/// `RL_HOLD`: an rx callback keeps the buffer.
pub const RL_HOLD: i32 = 1;
/// `RL_BLOCK` as a 32-bit timeout (`~0UL` truncated on 64-bit hosts).
const BLOCK32: u32 = u32::MAX;

/// The largest vring (`RL_BUFFER_COUNT`) an instance accepts: the size of its per-buffer tables.
#[cfg(not(target_os = "none"))]
pub const MAX_BUFFERS: usize = 256;
/// The largest vring (`RL_BUFFER_COUNT`) an instance accepts: the size of its per-buffer tables.
#[cfg(target_os = "none")]
pub const MAX_BUFFERS: usize = 16;

/// Endpoints one instance can have at once (RPMsg-Lite's list has no fixed bound).
pub const MAX_ENDPOINTS: usize = 16;

/// The marker a live instance, virtqueue or name-service context carries.
const LIVE: u32 = 0x524C_4331; // "RLC1"
/// Bytes reserved in `struct rpmsg_lite_instance` for the Rust state (`RL_C_STATE_BYTES`).
#[cfg(target_pointer_width = "64")]
pub const STATE_BYTES: usize = 40960;
/// Bytes reserved in `struct rpmsg_lite_instance` for the Rust state (`RL_C_STATE_BYTES`).
#[cfg(not(target_pointer_width = "64"))]
pub const STATE_BYTES: usize = 4608;

// ---------------------------------------------------------------------------------------------
// The C side: the project's environment and platform layers, and our glue file
// ---------------------------------------------------------------------------------------------

/// An rx callback, `rl_ept_rx_cb_t`.
pub type RxCb = unsafe extern "C" fn(*mut c_void, u32, u32, *mut c_void) -> i32;
/// A name-service callback, `rpmsg_ns_new_ept_cb`.
pub type NsCb = unsafe extern "C" fn(u32, *const c_char, u32, *mut c_void);

/// What the glue file tells the library about the project's configuration, filled by
/// `rpmsg_c_glue_geometry` for one link id.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Glue {
    /// Must equal [`GLUE_VERSION`]: the glue file and the archive come from the same release.
    pub version: u32,
    /// `RL_BUFFER_PAYLOAD_SIZE` (or the custom configuration's).
    pub payload_size: u32,
    /// `RL_BUFFER_COUNT` (or the custom configuration's).
    pub buffer_count: u32,
    /// `VRING_ALIGN`.
    pub vring_align: u32,
    /// `VRING_SIZE`, 0 when the platform does not define it (computed).
    pub vring_size: u32,
    /// `RL_MS_PER_INTERVAL`.
    pub ms_per_interval: u32,
    /// `RL_PLATFORM_HIGHEST_LINK_ID`.
    pub highest_link_id: u32,
    /// Offset of the end of `struct rpmsg_lite_instance`'s state storage (the part this
    /// library reads and writes) as the project's compiler lays it out.
    pub instance_fixed: u32,
    /// `sizeof(struct rpmsg_lite_ept_static_context)`.
    pub ept_context_size: u32,
    /// `RL_C_STATE_BYTES` as the header the project compiled with says.
    pub state_bytes: u32,
}

/// The glue/archive interface version ([`Glue::version`]).
pub const GLUE_VERSION: u32 = 1;

unsafe extern "C" {
    fn rpmsg_c_glue_geometry(link_id: u32, out: *mut Glue) -> i32;

    fn env_init() -> i32;
    fn env_deinit() -> i32;
    fn env_free_memory(ptr: *mut c_void);
    fn env_lock_mutex(lock: *mut c_void);
    fn env_unlock_mutex(lock: *mut c_void);
    fn env_delete_mutex(lock: *mut c_void);
    fn env_sleep_msec(ms: u32);
    fn env_enable_interrupt(vector_id: u32);
    fn env_disable_interrupt(vector_id: u32);
    fn env_map_vatopa(address: *mut c_void) -> u32;
    fn env_map_patova(address: u32) -> *mut c_void;
    fn env_cache_flush(data: *mut c_void, len: u32);
    fn env_cache_invalidate(data: *mut c_void, len: u32);
    fn env_wait_for_link_up(link_state: *mut u32, link_id: u32, timeout_ms: u32) -> u32;
    fn env_tx_callback(link_id: u32);
    fn platform_init_interrupt(vector_id: u32, isr_data: *mut c_void) -> i32;
    fn platform_deinit_interrupt(vector_id: u32) -> i32;
    fn platform_notify(vector_id: u32);
    fn platform_in_isr() -> i32;
}

// ---------------------------------------------------------------------------------------------
// The C structures (include/rpmsg_lite.h, llist.h, virtqueue.h, rpmsg_ns.h)
// ---------------------------------------------------------------------------------------------

/// `struct llist`.
#[repr(C)]
#[derive(Debug)]
pub struct LList {
    data: *mut c_void,
    attr: u32,
    next: *mut Self,
    prev: *mut Self,
}

/// `struct rpmsg_lite_endpoint`.
#[repr(C)]
#[derive(Debug)]
pub struct CEpt {
    addr: u32,
    rx_cb: Option<RxCb>,
    rx_cb_data: *mut c_void,
    rfu: *mut c_void,
}

/// `struct rpmsg_lite_ept_static_context`: the endpoint and its list node.
#[repr(C)]
#[derive(Debug)]
pub struct CEptContext {
    ept: CEpt,
    node: LList,
}

/// `struct virtqueue`: what the environment's ISR table points to.
#[repr(C)]
#[derive(Debug)]
pub struct CVq {
    vq_queue_index: u32,
    live: u32,
    instance: *mut Instance,
}

/// `struct rpmsg_ns_context` (`rpmsg_ns_handle` points to one).
#[repr(C)]
#[derive(Debug)]
pub struct CNs {
    dev: *mut Instance,
    cb: Option<NsCb>,
    user_data: *mut c_void,
    live: u32,
    flags: u32,
}

/// `struct rpmsg_lite_instance`, up to the environment-specific lock context that follows it.
#[repr(C)]
#[derive(Debug)]
pub struct Instance {
    rvq: *mut CVq,
    tvq: *mut CVq,
    rl_endpoints: *mut LList,
    lock: *mut c_void,
    link_state: u32,
    sh_mem_base: *mut c_char,
    sh_mem_remaining: u32,
    sh_mem_total: u32,
    link_id: u32,
    live: u32,
    flags: u32,
    vq: [CVq; 2],
    state: *mut State,
    storage: [u64; STATE_BYTES / 8],
}

/// `Instance::flags`: the glue allocated the instance (dynamic API); deinit frees it.
const FLAG_ALLOCATED: u32 = 1;
/// `LList::attr` of an endpoint context the glue allocated; destroy frees it.
const EPT_ALLOCATED: u32 = 1;

// ---------------------------------------------------------------------------------------------
// Ports: the project's platform and environment as the core's traits
// ---------------------------------------------------------------------------------------------

/// The project's platform layer as a [`Platform`]: `platform_notify` rings, the environment's
/// cache calls keep the shared memory coherent, `env_map_vatopa`/`env_map_patova` translate.
#[derive(Debug)]
pub struct CPlatform {
    map: CMap,
    /// Master only: vring 0's notify id, rung once (the kick that ends init) and then no more.
    quiet_vring0: Option<u32>,
    kicked: core::sync::atomic::AtomicBool,
}

/// Address translation through `env_map_vatopa` / `env_map_patova`, checked against the region.
#[derive(Debug, Clone, Copy)]
pub struct CMap {
    base: usize,
    len: usize,
}

impl AddressMap for CMap {
    fn to_offset(&self, addr: u64, len: usize) -> Option<usize> {
        let pa = u32::try_from(addr).ok()?;
        // SAFETY: the project's translation function takes any 32-bit value.
        let va = unsafe { env_map_patova(pa) } as usize;
        let off = va.checked_sub(self.base)?;
        (off.checked_add(len)? <= self.len).then_some(off)
    }

    fn to_addr(&self, offset: usize) -> Option<u64> {
        if offset > self.len {
            return None;
        }
        let va = self.base.checked_add(offset)?;
        // SAFETY: the address is inside the shared region the project gave us.
        Some(u64::from(unsafe { env_map_vatopa(va as *mut c_void) }))
    }
}

impl Platform for CPlatform {
    type Map = CMap;

    fn address_map(&self) -> &CMap {
        &self.map
    }

    fn notify(&self, id: u32) {
        // An RPMsg-Lite master rings vring 0 once, at the end of init, and never for the
        // receive buffers it gives back (RL_ALLOW_CONSUMED_BUFFERS_NOTIFICATION 0): a remote
        // takes a vring 0 kick as "the master is (re)initialised", and one arriving between two
        // sessions would bring a re-initialised remote up on the old session's rings. Remotes
        // look for buffers in the ring when they need one.
        if self.quiet_vring0 == Some(id) && self.kicked.swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: the project's doorbell; any vector id of this link.
        unsafe { platform_notify(id) }
    }

    fn cache_clean(&self, addr: usize, len: usize) {
        // SAFETY: `addr .. addr + len` lies in the shared region (the core checks it).
        unsafe { env_cache_flush(addr as *mut c_void, u32::try_from(len).unwrap_or(u32::MAX)) }
    }

    fn cache_invalidate(&self, addr: usize, len: usize) {
        // SAFETY: as `cache_clean`.
        unsafe {
            env_cache_invalidate(addr as *mut c_void, u32::try_from(len).unwrap_or(u32::MAX));
        }
    }
}

/// The vectors of every live instance, one bit each (vector ids below 128).
static ACTIVE_VECTORS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

fn vectors_snapshot() -> [u32; 4] {
    ACTIVE_VECTORS.each_ref().map(|w| w.load(Ordering::Acquire))
}

fn set_vector(v: u32, on: bool) {
    if let Some(w) = ACTIVE_VECTORS.get((v / 32) as usize) {
        let bit = 1u32 << (v % 32);
        // Plain load/store (thumbv6m has no atomic read-modify-write); init and deinit, the only
        // writers, run in task context under the environment's init order.
        let old = w.load(Ordering::Acquire);
        w.store(if on { old | bit } else { old & !bit }, Ordering::Release);
    }
}

fn for_each_vector(mask: &[u32; 4], mut f: impl FnMut(u32)) {
    for (i, &word) in mask.iter().enumerate() {
        let mut w = word;
        while w != 0 {
            let b = w.trailing_zeros();
            w &= w - 1;
            f(i as u32 * 32 + b);
        }
    }
}

/// The link's lock: masks the doorbell vector of every live instance with
/// `env_disable_interrupt` while held, so the interrupt path (`virtqueue_notification`) cannot
/// run inside it. Tasks are kept apart by the instance's environment mutex, taken by every
/// entry point (see the crate docs).
#[derive(Debug)]
pub struct IrqLock;

// SAFETY: while `lock` runs `f`, every vector through which the library can be entered from an
// interrupt is masked, and task contexts are serialised by the environment mutex each entry
// point holds around its call into the link; `f` never calls out (the core's rule), so no
// second entry into the same link's bookkeeping can happen while it runs.
unsafe impl RawMutex for IrqLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self;

    fn lock<R>(&self, f: impl FnOnce() -> R) -> R {
        let mask = mask_vectors();
        let r = f();
        unmask_vectors(&mask);
        r
    }
}

/// Masks the doorbell vector of every live instance; returns which (one out-of-line copy for
/// every use of the lock, for flash).
#[inline(never)]
fn mask_vectors() -> [u32; 4] {
    let mask = vectors_snapshot();
    // SAFETY: the project's interrupt masking, any registered vector id.
    for_each_vector(&mask, |v| unsafe { env_disable_interrupt(v) });
    mask
}

/// Unmasks what `mask_vectors` masked, so every disable is paired.
#[inline(never)]
fn unmask_vectors(mask: &[u32; 4]) {
    // SAFETY: the project's interrupt masking, the vectors masked before.
    for_each_vector(mask, |v| unsafe { env_enable_interrupt(v) });
}

/// The environment as the core sees it. The library makes only non-blocking calls into the
/// link and waits itself, `RL_MS_PER_INTERVAL` milliseconds at a time through `env_sleep_msec`
/// (RPMsg-Lite's own way of counting timeouts); the clock is the sum of those sleeps.
#[derive(Debug)]
pub struct CEnv {
    ms: AtomicU32,
    interval: u32,
}

impl Environment for CEnv {
    type RawMutex = IrqLock;

    fn now(&self) -> Instant {
        Instant(u64::from(self.ms.load(Ordering::Relaxed)) * 1000)
    }

    fn wait(&self, _deadline: Option<Instant>) {
        // SAFETY: the project's sleep.
        unsafe { env_sleep_msec(self.interval) };
        let t = self.ms.load(Ordering::Relaxed);
        self.ms
            .store(t.wrapping_add(self.interval), Ordering::Relaxed);
    }

    fn wake(&self) {}
}

type CLink = Link<'static, CPlatform, CEnv, MAX_BUFFERS, MAX_ENDPOINTS>;

// ---------------------------------------------------------------------------------------------
// The Rust state of one instance
// ---------------------------------------------------------------------------------------------

/// What one instance keeps beside its link.
struct Tables {
    /// Live endpoints: the C context and its address.
    epts: [Option<(*mut CEptContext, u32)>; MAX_ENDPOINTS],
    /// Received buffers a callback kept (`RL_HOLD`), by payload offset.
    held: [Option<(usize, HeldRx)>; MAX_BUFFERS],
    /// Transmit buffers handed out by `rpmsg_lite_alloc_tx_buffer`, by payload offset.
    tx: [Option<(usize, TxBuffer<'static>)>; MAX_BUFFERS],
    /// The name-service binding.
    ns: *mut CNs,
    /// The peer's services announced and not withdrawn, latest first taken: replayed to a
    /// callback bound later (RPMsg-Lite loses what arrives before `rpmsg_ns_bind`).
    services: [Option<Service>; MAX_SERVICES],
    /// Buffers a callback asked to hold that did not fit the table (released instead).
    held_overflow: u32,
}

/// Services remembered per instance for a later `rpmsg_ns_bind`.
pub const MAX_SERVICES: usize = 8;

/// One announced service: its NUL-terminated name and address.
#[derive(Debug, Clone, Copy)]
struct Service {
    name: [u8; 33],
    addr: u32,
}

impl Service {
    fn new(a: &Announcement) -> Self {
        let mut name = [0u8; 33];
        let bytes = a.name.as_bytes();
        let n = bytes.len().min(32);
        if let (Some(d), Some(s)) = (name.get_mut(..n), bytes.get(..n)) {
            d.copy_from_slice(s);
        }
        Self { name, addr: a.addr }
    }
}

/// The instance's Rust state, placed in `Instance::storage`.
pub struct State {
    // Declared (so dropped) before the link: its buffers and tokens give themselves back to it.
    tables: Mutex<IrqLock, RefCell<Tables>>,
    link: CLink,
    rx: Dispatch,
    ns: NsDispatch,
    base: usize,
    payload: usize,
    interval: u32,
    /// A remote without `RL_C_LATE_REMOTE`: its link is started by the master's first kick of
    /// vring 0 (this id), as RPMsg-Lite's remote comes up on it. Before, rings left by an
    /// earlier session are not looked at. `u32::MAX` once started.
    start_on_kick: AtomicU32,
}

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("State")
            .field("link", &self.link)
            .field("base", &self.base)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

const _: () = assert!(core::mem::size_of::<State>() <= STATE_BYTES);
const _: () = assert!(core::mem::align_of::<State>() <= 8);

/// The rx handler of every endpoint of one instance: finds the endpoint's C callback and calls
/// it with the payload's address.
struct Dispatch {
    state: *const State,
}

// SAFETY: `state` points to the instance's own `State`, which outlives every endpoint (deinit
// destroys them first); all access through it is shared and its mutable parts sit behind
// `IrqLock`.
unsafe impl Sync for Dispatch {}

/// The name-service handler of one instance.
struct NsDispatch {
    state: *const State,
}

// SAFETY: as `Dispatch`.
unsafe impl Sync for NsDispatch {}

impl rpmsg::RxHandler for Dispatch {
    fn on_message(&self, msg: RxBuffer<'_>) {
        // SAFETY: see `Dispatch`'s `Sync` impl: the state is live while its link runs handlers.
        let st = unsafe { &*self.state };
        st.deliver(msg);
    }
}

impl NsHandler for NsDispatch {
    fn on_announcement(&self, a: &Announcement) {
        // SAFETY: as `Dispatch`.
        let st = unsafe { &*self.state };
        let svc = Service::new(a);
        let ns = st.tab(|t| {
            for e in t.services.iter_mut() {
                if matches!(e, Some(s) if s.name == svc.name) {
                    *e = None;
                }
            }
            if a.kind == NsKind::Create {
                if let Some(e) = t.services.iter_mut().find(|e| e.is_none()) {
                    *e = Some(svc);
                }
            }
            t.ns
        });
        let flags = match a.kind {
            NsKind::Create => 0,
            NsKind::Destroy => 1,
        };
        call_ns(ns.unwrap_or(ptr::null_mut()), &svc, flags);
    }
}

/// Calls the bound name-service callback, if any, with one service.
fn call_ns(ns: *mut CNs, svc: &Service, flags: u32) {
    if ns.is_null() {
        return;
    }
    // SAFETY: a non-null `ns` from the table is the live context `rpmsg_ns_bind` registered;
    // `rpmsg_ns_unbind` removes it before the caller may free it.
    let (cb, user) = unsafe { ((*ns).cb, (*ns).user_data) };
    if let Some(cb) = cb {
        // SAFETY: the project's callback with RPMsg-Lite's arguments; the name is
        // NUL-terminated and lives for the call.
        unsafe { cb(svc.addr, svc.name.as_ptr().cast(), flags, user) };
    }
}

impl State {
    /// The tables under the lock. `None` only if a context this one interrupted holds them,
    /// which the lock rules out; never a panic.
    fn tab<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> Option<R> {
        self.tables
            .lock(|t| t.try_borrow_mut().ok().map(|mut t| f(&mut t)))
    }

    fn deliver(&self, msg: RxBuffer<'_>) {
        let dst = msg.dst();
        let ctx = self.tab(|t| {
            t.epts
                .iter()
                .flatten()
                .find(|(_, a)| *a == dst)
                .map(|(c, _)| *c)
        });
        let Some(ctx) = ctx.flatten() else { return };
        // SAFETY: a context in the table is live until `rpmsg_lite_destroy_ept` removes it.
        let (cb, priv_) = unsafe { ((*ctx).ept.rx_cb, (*ctx).ept.rx_cb_data) };
        let Some(cb) = cb else { return };
        let off = msg.payload_offset();
        let ptr = (self.base + off) as *mut c_void;
        let len = msg.len() as u32;
        // SAFETY: the project's callback with RPMsg-Lite's contract: the payload's address in
        // shared memory, its length and source, the endpoint's data pointer.
        let keep = unsafe { cb(ptr, len, msg.src(), priv_) } == RL_HOLD;
        if keep {
            let mut held = Some(msg.into_held());
            self.tab(|t| match t.held.iter_mut().find(|e| e.is_none()) {
                Some(slot) => *slot = held.take().map(|h| (off, h)),
                None => t.held_overflow += 1,
            });
            // No room to keep it: it goes back to the peer now.
            if let Some(h) = held {
                let _ = self.link.release_held(h);
            }
        }
    }

    /// Calls `f` with the link and tables, under the environment mutex outside interrupts.
    fn api<R>(&self, inst: *mut Instance, f: impl FnOnce(&Self) -> R) -> R {
        // SAFETY: `inst` was checked live by the caller; reading its lock pointer.
        let lock = unsafe { (*inst).lock };
        // SAFETY: the project's ISR query.
        let in_isr = unsafe { platform_in_isr() } != 0;
        if !in_isr && !lock.is_null() {
            // SAFETY: the mutex `env_create_mutex` made for this instance.
            unsafe { env_lock_mutex(lock) };
        }
        let r = f(self);
        if !in_isr && !lock.is_null() {
            // SAFETY: as above.
            unsafe { env_unlock_mutex(lock) };
        }
        r
    }

    /// Retries `f` every `RL_MS_PER_INTERVAL` ms while it finds no buffer, up to `timeout` ms
    /// (`RL_BLOCK`: forever), as RPMsg-Lite counts its waits.
    fn retry<T>(
        &self,
        inst: *mut Instance,
        timeout: usize,
        mut f: impl FnMut(&Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let forever = timeout == usize::MAX || timeout == BLOCK32 as usize;
        let mut waited: usize = 0;
        loop {
            match self.api(inst, &mut f) {
                Err(Error::NoBuffer) if forever || waited < timeout => {
                    // SAFETY: the project's sleep.
                    unsafe { env_sleep_msec(self.interval) };
                    waited = waited.saturating_add(self.interval as usize);
                    if !forever && waited >= timeout {
                        return self.api(inst, &mut f);
                    }
                }
                r => return r,
            }
        }
    }

    fn find_ept(&self, ept: *mut CEpt) -> Option<u32> {
        self.tab(|t| {
            t.epts
                .iter()
                .flatten()
                .find(|(c, _)| ptr::eq(c.cast::<CEpt>(), ept))
                .map(|(_, a)| *a)
        })
        .flatten()
    }

    fn has_endpoint_addr(&self, addr: u32) -> bool {
        self.tab(|t| t.epts.iter().flatten().any(|(_, a)| *a == addr))
            .unwrap_or(false)
    }

    fn any_endpoint_addr(&self) -> Option<u32> {
        self.tables.lock(|t| {
            t.try_borrow()
                .ok()?
                .epts
                .iter()
                .flatten()
                .map(|(_, a)| *a)
                .next()
        })
    }
}

/// The live state of `dev`, or `None` for NULL, a zeroed or a de-initialised instance.
fn state<'a>(dev: *mut Instance) -> Option<&'a State> {
    if dev.is_null() {
        return None;
    }
    // SAFETY: the caller passes an instance pointer; RPMsg-Lite's contract makes it point to a
    // `struct rpmsg_lite_instance` (it cannot be checked further). Fields are read by value.
    unsafe {
        if ptr::read_volatile(&raw const (*dev).live) != LIVE {
            return None;
        }
        let st = (*dev).state;
        if st.is_null() {
            return None;
        }
        Some(&*st)
    }
}

fn code(e: Error) -> i32 {
    match e {
        Error::NoBuffer | Error::Timeout => RL_ERR_NO_MEM,
        Error::NotReady | Error::LinkDown | Error::PeerViolation(_) => RL_NOT_READY,
        Error::PayloadTooLarge { .. } | Error::BufferTooSmall { .. } => RL_ERR_BUFF_SIZE,
        _ => RL_ERR_PARAM,
    }
}

fn update_link_state(dev: *mut Instance, st: &State) {
    let up = u32::from(st.link.is_up());
    // SAFETY: `dev` is live (checked by the caller); `link_state` is read by C
    // (`env_wait_for_link_up` polls it), so it is written volatile.
    unsafe {
        let was = ptr::read_volatile(&raw const (*dev).link_state);
        ptr::write_volatile(&raw mut (*dev).link_state, up);
        if was == 0 && up == 1 {
            env_tx_callback((*dev).link_id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Init and deinit
// ---------------------------------------------------------------------------------------------

/// Builds an instance in `dev` (the glue's forwarding target of both init calls).
///
/// # Safety
///
/// `dev` points to a writable `struct rpmsg_lite_instance` of the size the glue reports;
/// `lock_ctx` is its environment lock context (static API) or NULL; `shmem` is the shared
/// memory, mapped until deinit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_c_init(
    dev: *mut Instance,
    master: u32,
    shmem: *mut c_void,
    shmem_length: usize,
    link_id: u32,
    flags: u32,
    lock_ctx: *mut c_void,
    allocated: u32,
) -> *mut Instance {
    if dev.is_null() || shmem.is_null() {
        return ptr::null_mut();
    }
    let mut g = Glue::default();
    // SAFETY: the glue fills the struct it is given.
    if unsafe { rpmsg_c_glue_geometry(link_id, &mut g) } != 0
        || g.version != GLUE_VERSION
        || g.instance_fixed as usize != core::mem::size_of::<Instance>()
        || g.ept_context_size as usize != core::mem::size_of::<CEptContext>()
        || g.state_bytes as usize != STATE_BYTES
        || link_id > g.highest_link_id
        || g.buffer_count == 0
        || g.buffer_count as usize > MAX_BUFFERS
    {
        return ptr::null_mut();
    }
    // SAFETY: `dev` is writable (contract); refuse one that is live already.
    if unsafe { ptr::read_volatile(&raw const (*dev).live) } == LIVE {
        return ptr::null_mut();
    }
    let Ok(count) = u16::try_from(g.buffer_count) else {
        return ptr::null_mut();
    };
    let mut lite =
        LiteConfig::new(count, g.payload_size, g.vring_align as usize).with_link_id(link_id);
    if g.vring_size != 0 {
        lite = lite.with_vring_size(g.vring_size as usize);
    }
    let len = if master != 0 {
        shmem_length
    } else {
        lite.region_len()
    };
    let base = shmem as usize;
    // SAFETY: RPMsg-Lite's contract: the shared memory is mapped until deinit, and nothing in
    // this program holds references into it (C code reaches it through raw pointers only).
    let Ok(region) = (unsafe { SharedRegion::from_raw(shmem.cast(), len) }) else {
        return ptr::null_mut();
    };
    let role = if master != 0 {
        Role::Driver
    } else {
        Role::Device
    };
    let interval = g.ms_per_interval.max(1);
    let platform = CPlatform {
        map: CMap { base, len },
        quiet_vring0: (master != 0).then_some(link_id.wrapping_mul(2)),
        kicked: core::sync::atomic::AtomicBool::new(false),
    };
    let env = CEnv {
        ms: AtomicU32::new(0),
        interval,
    };
    let mut cfg = Config::lite(role, lite);
    cfg.poll_interval = core::time::Duration::from_millis(u64::from(interval));
    let Ok(link) = CLink::new(region, platform, env, cfg) else {
        return ptr::null_mut();
    };
    // SAFETY: the glue's init calls, in RPMsg-Lite's order.
    if unsafe { env_init() } != 0 {
        return ptr::null_mut();
    }
    let mut lock: *mut c_void = ptr::null_mut();
    // SAFETY: `lock_ctx` is the instance's own context (static API) or NULL.
    if unsafe { rpmsg_c_glue_create_mutex(&mut lock, lock_ctx) } != 0 {
        // SAFETY: undo env_init.
        unsafe { env_deinit() };
        return ptr::null_mut();
    }
    // RPMsg-Lite's vector ids, RL_GET_VQ_ID(link_id, q). Not `Link::notify_ids`, which says
    // so only once the link is started, while the interrupts must be in place before.
    let Some(base_id) = link_id.checked_mul(2).filter(|b| *b < 128) else {
        return ptr::null_mut();
    };
    let ids = [base_id, base_id | 1];
    // SAFETY: `dev` is writable; every field is written before the instance is marked live.
    unsafe {
        let stp = (&raw mut (*dev).storage).cast::<State>();
        stp.write(State {
            link,
            tables: Mutex::new(RefCell::new(Tables {
                epts: [None; MAX_ENDPOINTS],
                held: [const { None }; MAX_BUFFERS],
                tx: [const { None }; MAX_BUFFERS],
                ns: ptr::null_mut(),
                services: [None; MAX_SERVICES],
                held_overflow: 0,
            })),
            rx: Dispatch { state: stp },
            ns: NsDispatch { state: stp },
            base,
            payload: g.payload_size as usize,
            interval,
            start_on_kick: AtomicU32::new(u32::MAX),
        });
        for (i, id) in ids.iter().enumerate() {
            let vq = &raw mut (*dev).vq[i];
            (*vq).vq_queue_index = *id;
            (*vq).live = LIVE;
            (*vq).instance = dev;
        }
        // RPMsg-Lite's rvq is queue 0 for the remote and 1 for the master.
        let (r, t) = if master != 0 { (1, 0) } else { (0, 1) };
        (*dev).rvq = &raw mut (*dev).vq[r];
        (*dev).tvq = &raw mut (*dev).vq[t];
        (*dev).rl_endpoints = ptr::null_mut();
        (*dev).lock = lock;
        (*dev).link_state = 0;
        (*dev).sh_mem_base = shmem.cast();
        (*dev).sh_mem_remaining = 0;
        (*dev).sh_mem_total = 2 * g.buffer_count;
        (*dev).link_id = link_id;
        (*dev).flags = if allocated != 0 { FLAG_ALLOCATED } else { 0 };
        (*dev).state = stp;
        let st: &'static State = &*stp;
        // The handlers live in the state, which outlives the link's use of them.
        let nsh: &'static NsDispatch = &st.ns;
        let _ = st.link.set_ns_handler(nsh);
        ptr::write_volatile(&raw mut (*dev).live, LIVE);
        for id in ids {
            set_vector(id, true);
            platform_init_interrupt(id, (&raw mut (*dev).vq[(id & 1) as usize]).cast());
        }
        for id in ids {
            env_disable_interrupt(id);
        }
        let late = flags & RL_C_LATE_REMOTE != 0 || (master == 0 && fresh_master(st, &lite, len));
        let started = if master == 0 && !late {
            // The master's kick starts the link (`virtqueue_notification`): a remote started
            // now would come up on whatever rings the shared memory holds, an earlier
            // session's included.
            st.start_on_kick.store(base_id, Ordering::Release);
            Ok(())
        } else {
            st.link.start()
        };
        if started.is_ok() && master == 0 && late {
            // Asked for: a master that kicked before we listened is seen by its rings.
            let _ = st.link.poll();
        }
        for id in ids {
            env_enable_interrupt(id);
        }
        if started.is_err() {
            teardown(dev, st);
            return ptr::null_mut();
        }
        update_link_state(dev, st);
    }
    dev
}

/// Whether the rings hold a master's init and no traffic yet: vring 0's receive buffers
/// posted, nothing sent either way (vring 1's available and vring 0's used index still 0). A
/// remote may then come up at once even if it missed the kick; rings a session used are left
/// alone until the kick.
fn fresh_master(st: &State, lite: &LiteConfig, len: usize) -> bool {
    let Ok(l) = lite.validate(len) else {
        return false;
    };
    let r = st.link.region();
    let (v0, v1, _) = lite.offsets();
    let word = |off: usize| r.read_u16(off).ok();
    matches!(
        (word(v0 + l.avail + 2), word(v1 + l.avail + 2), word(v0 + l.used + 2)),
        (Some(posted), Some(0), Some(0)) if posted != 0
    )
}

unsafe extern "C" {
    fn rpmsg_c_glue_create_mutex(lock: *mut *mut c_void, ctx: *mut c_void) -> i32;
}

/// Undoes an init: endpoints and buffers dropped, interrupts released, the state dropped.
///
/// # Safety
///
/// `dev` is live and `st` its state; nothing else uses the instance any more.
unsafe fn teardown(dev: *mut Instance, st: &State) {
    // The interrupt path first: from here on a doorbell finds a dead virtqueue.
    // SAFETY: `dev` is live (contract).
    let ids = unsafe {
        (*dev).vq[0].live = 0;
        (*dev).vq[1].live = 0;
        [(*dev).vq[0].vq_queue_index, (*dev).vq[1].vq_queue_index]
    };
    for id in ids {
        // SAFETY: the vectors registered at init.
        unsafe { platform_deinit_interrupt(id) };
        set_vector(id, false);
    }
    // Give back held and allocated buffers; free the contexts the glue allocated.
    let taken = st.api(dev, |st| {
        let _ = st.link.shutdown();
        st.tab(|t| {
            let mut held: [Option<HeldRx>; MAX_BUFFERS] = [const { None }; MAX_BUFFERS];
            for (d, s) in held.iter_mut().zip(t.held.iter_mut()) {
                *d = s.take().map(|(_, h)| h);
            }
            let mut tx: [Option<TxBuffer<'static>>; MAX_BUFFERS] = [const { None }; MAX_BUFFERS];
            for (d, s) in tx.iter_mut().zip(t.tx.iter_mut()) {
                *d = s.take().map(|(_, b)| b);
            }
            let epts = t.epts;
            t.epts = [None; MAX_ENDPOINTS];
            let ns = core::mem::replace(&mut t.ns, ptr::null_mut());
            (held, tx, epts, ns)
        })
    });
    // `None` cannot happen (nothing else runs under the lock); the state's drop below, tables
    // before link, would then give the buffers back.
    let (held, tx, epts, ns) = taken.unwrap_or((
        [const { None }; MAX_BUFFERS],
        [const { None }; MAX_BUFFERS],
        [None; MAX_ENDPOINTS],
        ptr::null_mut(),
    ));
    st.api(dev, |st| {
        drop(tx);
        for h in held.into_iter().flatten() {
            let _ = st.link.release_held(h);
        }
    });
    for (ctx, _) in epts.into_iter().flatten() {
        // SAFETY: contexts in the table were live; the glue allocated those marked so.
        unsafe { free_ept(ctx) };
    }
    if !ns.is_null() {
        // SAFETY: the bound context is live until unbound, which is now.
        unsafe {
            (*ns).live = 0;
            if (*ns).flags & 1 != 0 {
                env_free_memory(ns.cast());
            }
        }
    }
    // SAFETY: `dev` is live; after this nothing refers to the state.
    unsafe {
        ptr::write_volatile(&raw mut (*dev).live, 0);
        ptr::write_volatile(&raw mut (*dev).link_state, 0);
        (*dev).rl_endpoints = ptr::null_mut();
        let stp = (*dev).state;
        (*dev).state = ptr::null_mut();
        ptr::drop_in_place(stp);
        if !(*dev).lock.is_null() {
            env_delete_mutex((*dev).lock);
            (*dev).lock = ptr::null_mut();
        }
        env_deinit();
    }
}

/// # Safety
///
/// `ctx` is a live endpoint context that has left the tables.
unsafe fn free_ept(ctx: *mut CEptContext) {
    // SAFETY: contract.
    unsafe {
        (*ctx).ept.rfu = ptr::null_mut();
        if (*ctx).node.attr & EPT_ALLOCATED != 0 {
            env_free_memory(ctx.cast());
        }
    }
}

/// `rpmsg_lite_deinit`.
///
/// # Safety
///
/// `dev` is NULL or points to a `struct rpmsg_lite_instance`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_deinit(dev: *mut Instance) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    // SAFETY: live (checked); the flag says whether the glue allocated it.
    let allocated = unsafe { (*dev).flags } & FLAG_ALLOCATED != 0;
    // SAFETY: live; the caller is done with it (RPMsg-Lite's contract for deinit).
    unsafe { teardown(dev, st) };
    if allocated {
        // SAFETY: allocated by the glue with env_allocate_memory.
        unsafe { env_free_memory(dev.cast()) };
    }
    RL_SUCCESS
}

/// `rpmsg_lite_is_link_up`.
///
/// # Safety
///
/// As [`rpmsg_lite_deinit`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_is_link_up(dev: *mut Instance) -> u32 {
    match state(dev) {
        Some(st) => st.api(dev, |st| {
            update_link_state(dev, st);
            u32::from(st.link.is_up())
        }),
        None => 0,
    }
}

/// `rpmsg_lite_wait_for_link_up`: the environment's `env_wait_for_link_up` on the instance's
/// `link_state`, which the interrupt path sets.
///
/// # Safety
///
/// As [`rpmsg_lite_deinit`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_wait_for_link_up(dev: *mut Instance, timeout: u32) -> u32 {
    let Some(st) = state(dev) else { return 0 };
    st.api(dev, |st| update_link_state(dev, st));
    // SAFETY: live; the environment polls `link_state` or waits for `env_tx_callback`.
    unsafe { env_wait_for_link_up(&raw mut (*dev).link_state, (*dev).link_id, timeout) }
}

/// The interrupt entry: the environment's ISR calls it with the `struct virtqueue *` that
/// `platform_init_interrupt` registered (`env_isr` in `rpmsg_env_bm.c`).
///
/// # Safety
///
/// `vq` is NULL or a pointer the environment got from `platform_init_interrupt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn virtqueue_notification(vq: *mut CVq) {
    if vq.is_null() {
        return;
    }
    // SAFETY: registered by us; inside a live or de-initialised instance (marker checked).
    let (live, id, dev) = unsafe {
        (
            ptr::read_volatile(&raw const (*vq).live),
            (*vq).vq_queue_index,
            (*vq).instance,
        )
    };
    if live != LIVE {
        return;
    }
    let Some(st) = state(dev) else { return };
    if st.start_on_kick.load(Ordering::Acquire) != u32::MAX {
        if st.start_on_kick.load(Ordering::Acquire) != id {
            return; // not the master's kick: nothing to look at before it
        }
        st.start_on_kick.store(u32::MAX, Ordering::Release);
        if st.link.start().is_err() {
            return;
        }
    }
    let _ = st.link.handle_notify(id);
    update_link_state(dev, st);
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// Creates an endpoint in `ctx` (the glue's forwarding target of `rpmsg_lite_create_ept`).
///
/// # Safety
///
/// `dev` is NULL or an instance; `ctx` is NULL or a writable endpoint context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_c_create_ept(
    dev: *mut Instance,
    addr: u32,
    rx_cb: Option<RxCb>,
    rx_cb_data: *mut c_void,
    ctx: *mut CEptContext,
    allocated: u32,
) -> *mut CEpt {
    // The state lives until deinit, which destroys every endpoint first: its handler may be
    // given to them as `'static`.
    let Some(st) = state::<'static>(dev) else {
        return ptr::null_mut();
    };
    if ctx.is_null() {
        return ptr::null_mut();
    }
    if st.api(dev, |st| st.find_ept(ctx.cast()).is_some()) {
        return ptr::null_mut();
    }
    let handler: &'static Dispatch = &st.rx;
    let r = st.api(dev, |st| {
        // RL_ADDR_ANY: the lowest free address from 1, as RPMsg-Lite picks it (applications
        // pass it around in a byte; the name service's 53 is the link's own).
        let fixed = addr != rpmsg::RPMSG_ADDR_ANY;
        let mut next = 1u32;
        let ep = loop {
            let a = if fixed {
                addr
            } else {
                while next == rpmsg::RPMSG_NS_ADDR || st.has_endpoint_addr(next) {
                    next += 1;
                }
                next
            };
            match st
                .link
                .create_endpoint(EndpointConfig::new().callback(handler).addr(a))
            {
                Err(Error::AddressInUse(_)) if !fixed && next < u32::MAX - 1 => next += 1,
                other => break other?,
            }
        };
        let a = ep.addr();
        let slot_free = st.tab(|t| match t.epts.iter_mut().find(|e| e.is_none()) {
            Some(s) => {
                *s = Some((ctx, a));
                true
            }
            None => false,
        });
        if slot_free != Some(true) {
            let _ = ep.destroy();
            return Err(Error::TooManyEndpoints {
                capacity: MAX_ENDPOINTS,
            });
        }
        Ok(a)
    });
    let Ok(a) = r else {
        return ptr::null_mut();
    };
    // SAFETY: `ctx` is writable (contract) and now ours; the list lives in the instance.
    unsafe {
        (*ctx).ept = CEpt {
            addr: a,
            rx_cb,
            rx_cb_data,
            rfu: dev.cast(),
        };
        let head = (*dev).rl_endpoints;
        (*ctx).node = LList {
            data: ctx.cast(),
            attr: if allocated != 0 { EPT_ALLOCATED } else { 0 },
            next: head,
            prev: ptr::null_mut(),
        };
        if !head.is_null() {
            (*head).prev = &raw mut (*ctx).node;
        }
        (*dev).rl_endpoints = &raw mut (*ctx).node;
    }
    ctx.cast()
}

/// `rpmsg_lite_destroy_ept`.
///
/// # Safety
///
/// `dev` and `ept` are NULL or what RPMsg-Lite's contract says; `ept` is only dereferenced
/// when it is a live endpoint of `dev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_destroy_ept(dev: *mut Instance, ept: *mut CEpt) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    if ept.is_null() {
        return RL_ERR_PARAM;
    }
    let ctx = ept.cast::<CEptContext>();
    let r = st.api(dev, |st| {
        let found = st.tab(|t| {
            let e = t
                .epts
                .iter_mut()
                .find(|e| matches!(e, Some((c, _)) if ptr::eq(*c, ctx)))?;
            e.take().map(|(_, a)| a)
        });
        let a = found.flatten().ok_or(Error::EndpointDestroyed)?;
        st.link.endpoint(a).and_then(|ep| ep.destroy())
    });
    if let Err(e) = r {
        if matches!(e, Error::EndpointDestroyed) {
            return RL_ERR_PARAM;
        }
    }
    // SAFETY: `ept` was a live endpoint of `dev` (found in its table) and has left it; unlink it.
    unsafe {
        let node = &raw mut (*ctx).node;
        let (prev, next) = ((*node).prev, (*node).next);
        if prev.is_null() {
            (*dev).rl_endpoints = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        free_ept(ctx);
    }
    RL_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Sending and receiving
// ---------------------------------------------------------------------------------------------

/// `rpmsg_lite_send`.
///
/// # Safety
///
/// `data` points to `size` readable bytes (not checkable); the rest as RPMsg-Lite's contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_send(
    dev: *mut Instance,
    ept: *mut CEpt,
    dst: u32,
    data: *const c_char,
    size: u32,
    timeout: usize,
) -> i32 {
    if ept.is_null() || data.is_null() {
        return RL_ERR_PARAM;
    }
    let Some(st) = state(dev) else {
        return if dev.is_null() {
            RL_ERR_PARAM
        } else {
            RL_NOT_READY
        };
    };
    if size as usize > st.payload {
        return RL_ERR_BUFF_SIZE;
    }
    let src = match st.api(dev, |st| (st.find_ept(ept), st.link.is_up())) {
        (None, _) => return RL_ERR_PARAM,
        (Some(_), false) => return RL_NOT_READY,
        (Some(a), true) => a,
    };
    // SAFETY: `data` points to `size` readable bytes (RPMsg-Lite's contract) that are not
    // shared memory the peer writes.
    let bytes = unsafe { core::slice::from_raw_parts(data.cast::<u8>(), size as usize) };
    match st.retry(dev, timeout, |st| {
        st.link.send_offchannel(src, dst, bytes, Timeout::NoWait)
    }) {
        Ok(()) => RL_SUCCESS,
        Err(e) => code(e),
    }
}

/// `rpmsg_lite_alloc_tx_buffer`.
///
/// # Safety
///
/// `size` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_alloc_tx_buffer(
    dev: *mut Instance,
    size: *mut u32,
    timeout: usize,
) -> *mut c_void {
    if size.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: writable (contract).
    unsafe { size.write(0) };
    let Some(st) = state(dev) else {
        return ptr::null_mut();
    };
    let Some(src) = st.api(dev, |st| {
        st.link.is_up().then(|| st.any_endpoint_addr()).flatten()
    }) else {
        return ptr::null_mut();
    };
    let r = st.retry(dev, timeout, |st| {
        let ep = st.link.endpoint(src)?;
        let tx = ep.alloc_tx(Timeout::NoWait)?;
        // SAFETY: the link lives in the state until deinit, which drops the table first.
        let tx: TxBuffer<'static> = unsafe { core::mem::transmute::<TxBuffer<'_>, _>(tx) };
        let off = tx.payload_offset();
        let cap = tx.capacity();
        st.tab(|t| match t.tx.iter_mut().find(|e| e.is_none()) {
            Some(s) => {
                *s = Some((off, tx));
                Ok((off, cap))
            }
            None => Err(Error::NoBuffer),
        })
        .unwrap_or(Err(Error::Busy))
    });
    match r {
        Ok((off, cap)) => {
            // SAFETY: writable (contract).
            unsafe { size.write(cap as u32) };
            (st.base + off) as *mut c_void
        }
        Err(_) => ptr::null_mut(),
    }
}

/// `rpmsg_lite_send_nocopy`.
///
/// # Safety
///
/// As [`rpmsg_lite_send`]; `data` is only used as a number unless it is a buffer of `dev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_send_nocopy(
    dev: *mut Instance,
    ept: *mut CEpt,
    dst: u32,
    data: *mut c_void,
    size: u32,
) -> i32 {
    if ept.is_null() || data.is_null() {
        return RL_ERR_PARAM;
    }
    let Some(st) = state(dev) else {
        return if dev.is_null() {
            RL_ERR_PARAM
        } else {
            RL_NOT_READY
        };
    };
    if size as usize > st.payload {
        return RL_ERR_BUFF_SIZE;
    }
    let Some(src) = st.api(dev, |st| st.find_ept(ept)) else {
        return RL_ERR_PARAM;
    };
    let Some(off) = (data as usize).checked_sub(st.base) else {
        return RL_ERR_PARAM;
    };
    st.api(dev, |st| {
        let tx = st.tab(|t| {
            let e =
                t.tx.iter_mut()
                    .find(|e| matches!(e, Some((o, _)) if *o == off))?;
            e.take().map(|(_, b)| b)
        });
        let Some(tx) = tx.flatten() else {
            return RL_ERR_PARAM;
        };
        match tx.send_offchannel(src, dst, size as usize) {
            Ok(()) => RL_SUCCESS,
            Err(e) => {
                let c = code(e.error);
                let buf = e.into_inner();
                // The buffer stays the caller's, as in RPMsg-Lite.
                st.tab(|t| {
                    if let Some(s) = t.tx.iter_mut().find(|e| e.is_none()) {
                        *s = Some((off, buf));
                    }
                });
                c
            }
        }
    })
}

/// `rpmsg_lite_release_rx_buffer`.
///
/// # Safety
///
/// `rxbuf` is only used as a number unless it is a held buffer of `dev`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_lite_release_rx_buffer(
    dev: *mut Instance,
    rxbuf: *mut c_void,
) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    if rxbuf.is_null() {
        return RL_ERR_PARAM;
    }
    let Some(off) = (rxbuf as usize).checked_sub(st.base) else {
        return RL_ERR_PARAM;
    };
    st.api(dev, |st| {
        let h = st.tab(|t| {
            let e = t
                .held
                .iter_mut()
                .find(|e| matches!(e, Some((o, _)) if *o == off))?;
            e.take().map(|(_, h)| h)
        });
        match h.flatten() {
            Some(h) => match st.link.release_held(h) {
                Ok(()) => RL_SUCCESS,
                Err(e) => code(e.error),
            },
            None => RL_ERR_PARAM,
        }
    })
}

/// Gives back a transmit buffer from `rpmsg_lite_alloc_tx_buffer` without sending it (what the
/// NXP RTOS layer's `rpmsg_rtos_recv_nocopy_free` does with a transmit buffer). RPMsg-Lite has
/// no such call; `RL_ERR_PARAM` for a pointer that is not an outstanding buffer of `dev`.
///
/// # Safety
///
/// `txbuf` is only used as a number.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_c_release_tx_buffer(dev: *mut Instance, txbuf: *mut c_void) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    let Some(off) = (txbuf as usize).checked_sub(st.base) else {
        return RL_ERR_PARAM;
    };
    st.api(dev, |st| {
        let tx = st.tab(|t| {
            let e =
                t.tx.iter_mut()
                    .find(|e| matches!(e, Some((o, _)) if *o == off))?;
            e.take().map(|(_, b)| b)
        });
        match tx.flatten() {
            Some(b) => {
                drop(b);
                RL_SUCCESS
            }
            None => RL_ERR_PARAM,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Name service
// ---------------------------------------------------------------------------------------------

/// Binds the name-service callback in `ns` (the glue's forwarding target of `rpmsg_ns_bind`),
/// and passes it the services the peer announced before (RPMsg-Lite drops those).
///
/// # Safety
///
/// `ns` is NULL or a writable `struct rpmsg_ns_context` that stays until unbind or deinit.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_c_ns_bind(
    dev: *mut Instance,
    cb: Option<NsCb>,
    user_data: *mut c_void,
    ns: *mut CNs,
    allocated: u32,
) -> *mut CNs {
    let Some(st) = state(dev) else {
        return ptr::null_mut();
    };
    if cb.is_none() || ns.is_null() {
        return ptr::null_mut();
    }
    let bound = st.api(dev, |st| {
        st.tab(|t| {
            if !t.ns.is_null() {
                return None;
            }
            // SAFETY: writable (contract); published in the table only once complete.
            unsafe {
                ns.write(CNs {
                    dev,
                    cb,
                    user_data,
                    live: LIVE,
                    flags: if allocated != 0 { 1 } else { 0 },
                });
            }
            t.ns = ns;
            Some(t.services)
        })
    });
    let Some(services) = bound.flatten() else {
        return ptr::null_mut();
    };
    // What the peer announced before this binding, as if it arrived now.
    for svc in services.iter().flatten() {
        call_ns(ns, svc, 0);
    }
    ns
}

/// `rpmsg_ns_unbind`.
///
/// # Safety
///
/// `handle` is only dereferenced when it is `dev`'s bound context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_ns_unbind(dev: *mut Instance, handle: *mut CNs) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    if handle.is_null() {
        return RL_ERR_PARAM;
    }
    let ok = st.api(dev, |st| {
        st.tab(|t| {
            if !ptr::eq(t.ns, handle) {
                return false;
            }
            t.ns = ptr::null_mut();
            true
        })
    });
    if ok != Some(true) {
        return RL_ERR_PARAM;
    }
    // SAFETY: it was the bound context; it is ours to retire.
    unsafe {
        (*handle).live = 0;
        if (*handle).flags & 1 != 0 {
            env_free_memory(handle.cast());
        }
    }
    RL_SUCCESS
}

/// `rpmsg_ns_announce`.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string (read up to 32 bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rpmsg_ns_announce(
    dev: *mut Instance,
    ept: *mut CEpt,
    name: *const c_char,
    flags: u32,
) -> i32 {
    let Some(st) = state(dev) else {
        return RL_ERR_PARAM;
    };
    if ept.is_null() || name.is_null() {
        return RL_ERR_PARAM;
    }
    let Some(addr) = st.api(dev, |st| st.find_ept(ept)) else {
        return RL_ERR_PARAM;
    };
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: NUL-terminated (contract); we stop at the NUL or after 32 bytes.
        let c = unsafe { name.cast::<u8>().add(n).read() };
        if c == 0 {
            break;
        }
        if let Some(b) = buf.get_mut(n) {
            *b = c;
        }
        n += 1;
    }
    let Some(Ok(s)) = buf.get(..n).map(core::str::from_utf8) else {
        return RL_ERR_PARAM;
    };
    let kind = if flags & 1 != 0 {
        NsKind::Destroy
    } else {
        NsKind::Create
    };
    match st.retry(dev, BLOCK32 as usize, |st| {
        st.link.ns_announce(s, addr, kind, Timeout::NoWait)
    }) {
        Ok(()) => RL_SUCCESS,
        Err(e) => code(e),
    }
}

/// critical-section for Cortex-M (the core takes it once per `Link::new`): interrupts off,
/// restored to what they were.
#[cfg(all(target_os = "none", target_arch = "arm"))]
mod primask {
    struct Primask;
    critical_section::set_impl!(Primask);

    // SAFETY: with interrupts masked (PRIMASK) nothing else runs on a single-core
    // microcontroller; release restores the state acquire found, so sections nest.
    unsafe impl critical_section::Impl for Primask {
        unsafe fn acquire() -> bool {
            let primask: u32;
            // SAFETY: reading PRIMASK and masking interrupts have no memory effects.
            unsafe {
                core::arch::asm!("mrs {}, PRIMASK", out(reg) primask, options(nomem, nostack, preserves_flags));
                core::arch::asm!("cpsid i", options(nostack, preserves_flags));
            }
            primask & 1 == 0
        }

        unsafe fn release(was_enabled: bool) {
            if was_enabled {
                // SAFETY: unmasks what acquire masked.
                unsafe { core::arch::asm!("cpsie i", options(nostack, preserves_flags)) };
            }
        }
    }
}

/// A panic can only come from a bug in this library; on a target without `std` it stops here.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
