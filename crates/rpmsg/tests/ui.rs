//! Compile-fail tests: breaking the buffer ownership rules of `rpmsg::buffer` does not compile.
//!
//! Each file in `tests/ui/` misuses a `TxBuffer`, an `RxBuffer` or an `Endpoint` in one way and
//! has a `.stderr` beside it with the error rustc must give (a moved value, a borrow that does
//! not live long enough); a file that compiles, or fails for another reason, fails this test.
//! After an intended change of the messages (a new compiler), regenerate them with
//! `TRYBUILD=overwrite cargo test -p rpmsg --test ui` and read the diff.
#![cfg(not(loom))]

#[test]
fn buffer_ownership_rules_are_enforced_at_compile_time() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
