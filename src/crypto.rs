//! Message bodies: `base64( IV[16] || AES-CBC(key, IV, PKCS#7(utf8 JSON)) )`.
//!
//! Decryption runs with OpenSSL's padding check off and validates PKCS#7 here,
//! so that every way a body can be bad gets its own error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::symm::{Cipher, Crypter, Mode};

const BLOCK: usize = 16;

/// A plaintext AES data key (AES-128, -192 or -256 by its length).
#[derive(Clone)]
pub struct DataKey {
    bytes: Vec<u8>,
    cipher: Cipher,
}

/// The key material never appears in `Debug` output.
impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(AES-{}, redacted)", self.bytes.len() * 8)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the data key is {0} bytes long; AES needs 16, 24 or 32")]
    BadLength(usize),
    #[error("the data key is not valid base64")]
    NotBase64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("message body is not valid base64")]
    NotBase64,
    #[error(
        "message body decodes to {len} bytes; at least 32 are needed (16-byte IV and one AES block)"
    )]
    TooShort { len: usize },
    #[error("ciphertext is {len} bytes, not a multiple of the 16-byte AES block")]
    NotBlockAligned { len: usize },
    #[error("padding is not valid PKCS#7 (wrong key or corrupted message)")]
    BadPadding,
    #[error("decrypted plaintext is not valid UTF-8")]
    NotUtf8,
    #[error("OpenSSL refused to decrypt: {0}")]
    Cipher(String),
}

impl DataKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        let cipher = match bytes.len() {
            16 => Cipher::aes_128_cbc(),
            24 => Cipher::aes_192_cbc(),
            32 => Cipher::aes_256_cbc(),
            n => return Err(KeyError::BadLength(n)),
        };
        Ok(Self { bytes, cipher })
    }

    /// A key given as base64 of its raw bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        Self::new(bytes)
    }

    /// Decrypts one SQS message body into its UTF-8 plaintext.
    pub fn decrypt(&self, body: &str) -> Result<String, DecryptError> {
        let raw = BASE64
            .decode(body.trim())
            .map_err(|_| DecryptError::NotBase64)?;
        if raw.len() < 2 * BLOCK {
            return Err(DecryptError::TooShort { len: raw.len() });
        }
        let (iv, ciphertext) = raw.split_at(BLOCK);
        if ciphertext.len() % BLOCK != 0 {
            return Err(DecryptError::NotBlockAligned {
                len: ciphertext.len(),
            });
        }
        let mut plain = self
            .run(Mode::Decrypt, iv, ciphertext)
            .map_err(|e| DecryptError::Cipher(e.to_string()))?;
        let unpadded = strip_pkcs7(&plain).ok_or(DecryptError::BadPadding)?;
        plain.truncate(unpadded);
        String::from_utf8(plain).map_err(|_| DecryptError::NotUtf8)
    }

    /// Encrypts a plaintext into a message body with the given IV
    /// (the producer's format; used for test data and the CLI).
    pub fn encrypt_with_iv(&self, plaintext: &[u8], iv: [u8; BLOCK]) -> String {
        let pad = BLOCK - plaintext.len() % BLOCK;
        let mut padded = plaintext.to_vec();
        padded.resize(plaintext.len() + pad, pad as u8);
        let ciphertext = self
            .run(Mode::Encrypt, &iv, &padded)
            .expect("AES-CBC encryption of block-aligned input cannot fail");
        let mut raw = iv.to_vec();
        raw.extend_from_slice(&ciphertext);
        BASE64.encode(raw)
    }

    /// Encrypts with a fresh random IV.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let mut iv = [0u8; BLOCK];
        openssl::rand::rand_bytes(&mut iv).expect("the OpenSSL random generator failed");
        self.encrypt_with_iv(plaintext, iv)
    }

    /// Raw CBC over block-aligned input, padding handled by the caller.
    fn run(
        &self,
        mode: Mode,
        iv: &[u8],
        input: &[u8],
    ) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut crypter = Crypter::new(self.cipher, mode, &self.bytes, Some(iv))?;
        crypter.pad(false);
        let mut out = vec![0u8; input.len() + BLOCK];
        let mut n = crypter.update(input, &mut out)?;
        n += crypter.finalize(&mut out[n..])?;
        out.truncate(n);
        Ok(out)
    }
}

/// Length of the data once valid PKCS#7 padding is removed, or `None`.
fn strip_pkcs7(data: &[u8]) -> Option<usize> {
    let pad = *data.last()? as usize;
    if pad == 0 || pad > BLOCK || pad > data.len() {
        return None;
    }
    let body = data.len() - pad;
    data[body..]
        .iter()
        .all(|&b| b as usize == pad)
        .then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(len: usize) -> DataKey {
        DataKey::new((0..len as u8).collect()).unwrap()
    }

    #[test]
    fn round_trips_with_every_key_size() {
        for len in [16, 24, 32] {
            let k = key(len);
            let body = k.encrypt_with_iv(b"{\"a\":1}", *b"0123456789abcdef");
            assert_eq!(k.decrypt(&body).unwrap(), "{\"a\":1}");
        }
    }

    #[test]
    fn matches_openssl_reference_encryption() {
        // Independent path: OpenSSL's own PKCS#7 padding on encrypt.
        let k = key(32);
        let iv = *b"ABCDEFGHIJKLMNOP";
        let ct =
            openssl::symm::encrypt(Cipher::aes_256_cbc(), &k.bytes, Some(&iv), b"hello").unwrap();
        let body = BASE64.encode([iv.as_slice(), &ct].concat());
        assert_eq!(body, k.encrypt_with_iv(b"hello", iv));
        assert_eq!(k.decrypt(&body).unwrap(), "hello");
    }

    #[test]
    fn rejects_bad_key_lengths() {
        assert_eq!(
            DataKey::new(vec![0; 15]).unwrap_err(),
            KeyError::BadLength(15)
        );
        assert_eq!(DataKey::from_base64("!!").unwrap_err(), KeyError::NotBase64);
    }

    #[test]
    fn each_bad_body_has_its_own_error() {
        let k = key(16);
        assert_eq!(
            k.decrypt("not base64 !").unwrap_err(),
            DecryptError::NotBase64
        );
        let short = BASE64.encode([0u8; 31]);
        assert_eq!(
            k.decrypt(&short).unwrap_err(),
            DecryptError::TooShort { len: 31 }
        );
        let ragged = BASE64.encode([0u8; 16 + 20]);
        assert_eq!(
            k.decrypt(&ragged).unwrap_err(),
            DecryptError::NotBlockAligned { len: 20 }
        );
        // Fixed IV: a wrong key yields fixed garbage, so the outcome is stable.
        let wrong_key = key(24).encrypt_with_iv(b"{\"some\":\"event\"}", [7; 16]);
        assert_eq!(k.decrypt(&wrong_key).unwrap_err(), DecryptError::BadPadding);
        let not_utf8 = k.encrypt(&[0xff, 0xfe, 0x00]);
        assert_eq!(k.decrypt(&not_utf8).unwrap_err(), DecryptError::NotUtf8);
    }

    #[test]
    fn padding_rules() {
        assert_eq!(strip_pkcs7(&[1, 2, 3, 1]), Some(3));
        assert_eq!(strip_pkcs7(&[16; 16]), Some(0));
        assert_eq!(strip_pkcs7(&[1, 2, 3, 0]), None);
        assert_eq!(strip_pkcs7(&[1, 2, 2, 3]), None);
        assert_eq!(strip_pkcs7(&[17; 17]), None);
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(format!("{:?}", key(32)), "DataKey(AES-256, redacted)");
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn any_key() -> impl Strategy<Value = DataKey> {
            prop_oneof![Just(16), Just(24), Just(32)]
                .prop_flat_map(|len| vec(any::<u8>(), len))
                .prop_map(|bytes| DataKey::new(bytes).unwrap())
        }

        /// The error each malformed body must get, decided from its length
        /// alone; `None` when it reaches the cipher.
        fn framing_error(body: &str) -> Option<DecryptError> {
            let Ok(raw) = BASE64.decode(body.trim()) else {
                return Some(DecryptError::NotBase64);
            };
            if raw.len() < 32 {
                Some(DecryptError::TooShort { len: raw.len() })
            } else if raw.len() % 16 != 0 {
                Some(DecryptError::NotBlockAligned {
                    len: raw.len() - 16,
                })
            } else {
                None
            }
        }

        /// Once framing passes, only padding or UTF-8 can be wrong: OpenSSL
        /// never refuses a block-aligned input.
        fn check(key: &DataKey, body: &str) -> Result<(), TestCaseError> {
            let got = key.decrypt(body);
            match framing_error(body) {
                Some(want) => prop_assert_eq!(got, Err(want)),
                None => prop_assert!(
                    matches!(
                        got,
                        Ok(_) | Err(DecryptError::BadPadding | DecryptError::NotUtf8)
                    ),
                    "{:?}",
                    got
                ),
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn any_text_gets_a_result_or_its_error(key in any_key(), body in any::<String>()) {
                check(&key, &body)?;
            }

            #[test]
            fn base64_looking_text_gets_a_result_or_its_error(
                key in any_key(),
                body in "[A-Za-z0-9+/]{0,90}={0,3}[ \n]?",
            ) {
                check(&key, &body)?;
            }

            #[test]
            fn any_bytes_get_a_result_or_their_error(
                key in any_key(),
                raw in prop_oneof![
                    vec(any::<u8>(), 0..100),
                    // Block-aligned, so the cipher runs and padding decides.
                    vec(any::<[u8; 16]>(), 2..8).prop_map(|blocks| blocks.concat()),
                ],
            ) {
                check(&key, &BASE64.encode(&raw))?;
            }

            #[test]
            fn encrypt_then_decrypt_gives_the_plaintext(
                key in any_key(),
                iv in any::<[u8; 16]>(),
                plain in prop_oneof![
                    any::<String>().prop_map(String::into_bytes),
                    vec(any::<u8>(), 0..100),
                ],
            ) {
                let body = key.encrypt_with_iv(&plain, iv);
                let raw = BASE64.decode(&body).unwrap();
                prop_assert_eq!(&raw[..16], &iv[..]);
                prop_assert_eq!(raw.len(), 16 + (plain.len() / 16 + 1) * 16);
                let want = String::from_utf8(plain).map_err(|_| DecryptError::NotUtf8);
                prop_assert_eq!(key.decrypt(&body), want);
            }
        }
    }
}
