// A `TxBuffer` can be sent once: the second `send` uses a moved value.
use rpmsg::Timeout;
use rpmsg::testing::pair;

fn main() {
    pair(|dev_ep, _drv_ep| {
        let mut tx = dev_ep.alloc_tx(Timeout::Forever)?;
        tx.write(0, b"hi")?;
        tx.send(2).map_err(|e| e.error)?;
        tx.send(2).map_err(|e| e.error)?;
        Ok(())
    });
}
