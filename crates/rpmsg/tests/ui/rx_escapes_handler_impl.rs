// `RxHandler::on_message` takes an `RxBuffer<'_>` for any lifetime: a handler type cannot keep
// the buffer past the call either.
use rpmsg::{EndpointConfig, RxBuffer, RxHandler};
use std::sync::Mutex;

struct Keeper {
    kept: Mutex<Option<RxBuffer<'static>>>,
}

impl RxHandler for Keeper {
    fn on_message(&self, msg: RxBuffer<'_>) {
        *self.kept.lock().unwrap() = Some(msg);
    }
}

fn main() {
    let keeper = Keeper {
        kept: Mutex::new(None),
    };
    let _cfg = EndpointConfig::new().callback(&keeper);
}
