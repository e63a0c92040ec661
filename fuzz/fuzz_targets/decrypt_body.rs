//! An SQS message body, decrypted with an AES-128, -192 and -256 key.
//!
//! Beyond not panicking: a body that decrypts must be exactly what encrypting
//! its plaintext with its own IV gives back (so padding is stripped only when
//! valid), and OpenSSL must never be the one to refuse a body (framing is
//! checked before it runs).

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use event_recorder::DataKey;
use event_recorder::crypto::DecryptError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    for len in [16u8, 24, 32] {
        // Bytes 0, 1, 2, …: the 32-byte one is the key the seed corpus uses.
        let key = DataKey::new((0..len).collect()).expect("a valid key length");
        match key.decrypt(body) {
            Ok(plain) => {
                let raw = BASE64.decode(body.trim()).expect("it decrypted");
                let iv: [u8; 16] = raw[..16].try_into().expect("16 bytes");
                assert_eq!(key.encrypt_with_iv(plain.as_bytes(), iv), body.trim());
            }
            Err(DecryptError::Cipher(_)) => panic!("OpenSSL refused a framed body"),
            Err(_) => {}
        }
    }
});
