// A callback gets an `RxBuffer<'_>` that lives only for the call: it cannot be stored where it
// would outlive the call (that is what `RxBuffer::into_held` is for).
use rpmsg::{EndpointConfig, RxBuffer};
use std::sync::Mutex;

fn main() {
    let kept: Mutex<Option<RxBuffer<'static>>> = Mutex::new(None);
    let handler = |msg: RxBuffer<'_>| {
        *kept.lock().unwrap() = Some(msg);
    };
    let _cfg = EndpointConfig::new().callback(&handler);
}
