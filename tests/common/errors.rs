//! Checks of the errors the API returns.

use candle_core::Result;

/// `res` is an error whose message contains every needle (the tensor or option it names, the value seen).
pub fn expect_err<T>(res: Result<T>, needles: &[&str]) {
    let msg = match res {
        Ok(_) => panic!("expected an error mentioning {needles:?}"),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
}
