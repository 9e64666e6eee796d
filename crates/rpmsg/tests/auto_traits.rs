//! `Send` and `Sync` of every public type, checked by the compiler (tokio's
//! tests/async_send_sync.rs does the same for tokio's types).
//!
//! The rule: a [`Link`] is shared by the contexts that drive it (the doorbell interrupt, tasks,
//! threads), so it is `Sync`, and the handles borrowed from it (`Endpoint`, `TxBuffer`,
//! `RxBuffer`) are `Send + Sync` so that a thread or a spawned task (`tokio::spawn` needs `Send`)
//! can send and receive. That rests on the crate-private `LinkCore: Sync` bound and on
//! `Platform: Sync`, `Environment: Sync` with a `Sync` lock, which make every `Link` `Sync`; the
//! generic check at the bottom proves it for all of them, not only the test link.
//!
//! Ownership rules that are traits too: buffers and held tokens are not `Clone`, so none can be
//! sent or released twice (the compile-fail tests in tests/ui/ prove the moves).
#![cfg(not(loom))]

use rpmsg::port::{CriticalSectionRawMutex, SpinEnvironment, StdEnvironment};
use rpmsg::shm::AccessError;
use rpmsg::testing::{Loopback, TestEnv, TestLink, TestMemory};
use rpmsg::virtqueue::{DeviceQueue, DriverQueue, Popped, TooLarge, Vring};
use rpmsg::wire::ns::Name;
use rpmsg::wire::rsc::{CarveoutRepr, RscTableRepr, TraceRepr, VdevRepr};
use rpmsg::wire::vring::VringLayout;
use rpmsg::{
    Announcement, Config, Endpoint, EndpointConfig, Environment, Error, HeldError, HeldRx, Instant,
    LayoutConfig, LinearMap, Link, LinkStats, LiteConfig, NsCallbacks, NsHandler, NsKind, NsQueue,
    Platform, Role, RscConfig, RxBuffer, RxHandler, RxMode, SegmentMap, SharedRegion, Timeout,
    TxBuffer, TxError, Violation,
};

fn send_sync<T: ?Sized + Send + Sync>() {}
fn sync<T: ?Sized + Sync>() {}
fn send_sync_val<T: Send + Sync>(_: &T) {}

/// Fails to compile if `$t` implements the trait: with it, `AmbiguousIfImpl<_>` has two
/// candidate impls and the path is ambiguous (the `static_assertions::assert_not_impl_any` trick).
macro_rules! assert_not_impl {
    ($t:ty: $($tr:tt)+) => {{
        trait AmbiguousIfImpl<A> {
            fn some_item() {}
        }
        impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
        struct Invalid;
        impl<T: ?Sized + $($tr)+> AmbiguousIfImpl<Invalid> for T {}
        let _ = <$t as AmbiguousIfImpl<_>>::some_item;
    }};
}

type HostedLink<'r> = Link<'r, Loopback, StdEnvironment, 256, 8>;
type SpinLink<'r> = Link<'r, Loopback, SpinEnvironment<fn() -> u64>, 2, 4>;
type Callbacks = NsCallbacks<fn(&Name, u32), fn(&Name, u32)>;

#[test]
fn link_and_its_handles_are_send_and_sync() {
    send_sync::<TestLink<'static, 2>>();
    send_sync::<HostedLink<'static>>();
    send_sync::<SpinLink<'static>>();
    send_sync::<Endpoint<'static>>();
    send_sync::<TxBuffer<'static>>();
    send_sync::<TxError<'static>>();
    send_sync::<RxBuffer<'static>>();
    send_sync::<HeldRx>();
    send_sync::<HeldError>();
}

#[test]
fn configuration_errors_and_counters_are_send_and_sync() {
    send_sync::<Config>();
    send_sync::<Role>();
    send_sync::<LayoutConfig>();
    send_sync::<LiteConfig>();
    send_sync::<RscConfig>();
    send_sync::<EndpointConfig<'static>>();
    send_sync::<RxMode<'static>>();
    send_sync::<LinkStats>();
    send_sync::<Error>();
    send_sync::<Violation>();
    send_sync::<AccessError>();
    send_sync::<Timeout>();
    send_sync::<Instant>();
}

#[test]
fn name_service_types_and_handlers_are_send_and_sync() {
    send_sync::<Announcement>();
    send_sync::<NsKind>();
    send_sync::<NsQueue<CriticalSectionRawMutex, 4>>();
    send_sync::<Callbacks>();
    // Handlers run in the context that polls the link, so the traits require `Sync`.
    sync::<dyn RxHandler>();
    sync::<dyn NsHandler>();
    send_sync::<&dyn RxHandler>();
    send_sync::<&dyn NsHandler>();
}

#[test]
fn memory_ring_and_port_types_are_send_and_sync() {
    send_sync::<SharedRegion<'static>>();
    send_sync::<Vring>();
    send_sync::<DriverQueue<2>>();
    send_sync::<DeviceQueue<2>>();
    send_sync::<Popped>();
    send_sync::<TooLarge>();
    send_sync::<LinearMap>();
    send_sync::<SegmentMap<2>>();
    send_sync::<StdEnvironment>();
    send_sync::<SpinEnvironment<fn() -> u64>>();
    send_sync::<TestMemory>();
    send_sync::<Loopback>();
    send_sync::<TestEnv>();
}

#[test]
fn wire_types_are_send_and_sync() {
    send_sync::<rpmsg::wire::Error>();
    send_sync::<rpmsg::wire::Name>();
    send_sync::<rpmsg::wire::NsFlags>();
    send_sync::<rpmsg::wire::NsMessage>();
    send_sync::<rpmsg::wire::NsRepr>();
    send_sync::<rpmsg::wire::RpmsgHeader>();
    send_sync::<rpmsg::wire::RpmsgRepr>();
    send_sync::<rpmsg::wire::ResourceTable<&'static [u8]>>();
    send_sync::<rpmsg::wire::VdevInfo>();
    send_sync::<rpmsg::wire::VringInfo>();
    send_sync::<rpmsg::wire::VringDesc>();
    send_sync::<VringLayout>();
    send_sync::<VdevRepr>();
    send_sync::<CarveoutRepr>();
    send_sync::<TraceRepr>();
    send_sync::<RscTableRepr<'static>>();
}

/// The futures of the async API can be handed to a multi-threaded executor (`tokio::spawn`).
/// Type-level only: the closures are never called, so nothing is polled.
#[test]
fn async_futures_are_send_and_sync() {
    let _ = |ep: Endpoint<'_>, buf: &mut [u8]| {
        send_sync_val(&ep.alloc_tx_async());
        send_sync_val(&ep.send_async(b"x"));
        send_sync_val(&ep.send_to_async(30, b"x"));
        send_sync_val(&ep.recv_zero_copy_async());
        send_sync_val(&ep.recv_async(buf));
    };
    let _ = |link: &TestLink<'_, 2>| send_sync_val(&link.wait_link_up_async());
}

#[test]
fn buffers_and_tokens_cannot_be_duplicated() {
    assert_not_impl!(TxBuffer<'static>: Clone);
    assert_not_impl!(RxBuffer<'static>: Clone);
    assert_not_impl!(HeldRx: Clone);
    assert_not_impl!(TxError<'static>: Clone);
    assert_not_impl!(HeldError: Clone);
}

/// Every `Link` is `Sync`, whatever its platform and environment: the trait bounds guarantee it,
/// which is what lets the crate hand out `&dyn LinkCore` (a `Sync` trait) from any link. The
/// check happens when this generic function is type-checked, for all `P`, `E`, `N`, `EPTS`.
#[test]
fn every_link_is_sync() {
    fn generic<P: Platform, E: Environment, const N: usize, const EPTS: usize>() {
        sync::<Link<'static, P, E, N, EPTS>>();
    }
    generic::<Loopback, TestEnv, 2, 8>();
}

/// The compact remote and its state can be handed to the context that drives it (the remote in a
/// `critical_section::Mutex<RefCell<_>>` needs `Send`, a `static` state needs `Sync`), for every
/// platform. A message is only ever seen inside its callback, so it need not be either.
#[cfg(all(feature = "role-device", feature = "layout-lite"))]
#[test]
fn compact_remote_and_state_are_send_and_sync() {
    use rpmsg::compact::{Message, Receive, Remote, State};
    fn generic<P: Platform + Send, const N: usize, const EPTS: usize>() {
        send_sync::<Remote<'static, P, N, EPTS>>();
        send_sync::<State<'static, N, EPTS>>();
    }
    generic::<Loopback, 2, 4>();
    sync::<dyn Receive>();
    assert_not_impl!(Message<'static>: Send);
}
