// A `TxBuffer` is consumed by `send`: writing to it afterwards is a use of a moved value.
use rpmsg::Timeout;
use rpmsg::testing::pair;

fn main() {
    pair(|dev_ep, _drv_ep| {
        let mut tx = dev_ep.alloc_tx(Timeout::Forever)?;
        tx.write(0, b"hi")?;
        tx.send(2).map_err(|e| e.error)?;
        tx.write(0, b"again")?;
        Ok(())
    });
}
