use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("signer is not a valid ed25519 public key")]
    BadPublicKey,
    /// The signature does not match the message and key.
    #[error("signature does not verify against the signer's key")]
    BadSignature,
    /// A key in text form is not 64 hex digits.
    #[error("expected 64 hexadecimal digits for an ed25519 key, got {0:?}")]
    BadHex(String),
    /// The operating system's random source failed.
    #[error("no randomness available to create a key: {0}")]
    NoRandomness(String),
}

/// An ed25519 public key: an agent's device key or the server's command key.
///
/// Prints as 64 lowercase hex digits, the form used by `gridmesh-agent enroll` and the API.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps 32 bytes; validity is checked when a signature is verified.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`KeyError::BadHex`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        parse_hex32(text).map(Self)
    }

    /// Checks `signature` over `message` (strict verification: no malleable signatures, no
    /// weak keys).
    ///
    /// # Errors
    /// [`KeyError::BadPublicKey`] or [`KeyError::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey)?;
        let signature: [u8; 64] = signature.try_into().map_err(|_| KeyError::BadSignature)?;
        key.verify_strict(message, &Signature::from_bytes(&signature)).map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// 64 hex digits (surrounding whitespace ignored) as 32 bytes.
fn parse_hex32(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let bad = || KeyError::BadHex(text.chars().take(80).collect());
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// An ed25519 key pair that signs messages. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl KeyPair {
    /// A new key from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::NoRandomness`] when the random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// The key pair for a 32-byte secret seed (as stored in the agent's key file).
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key pair for a seed written as 64 hex digits (the key-file format).
    ///
    /// # Errors
    /// [`KeyError::BadHex`] for anything else.
    pub fn from_seed_hex(text: &str) -> Result<Self, KeyError> {
        parse_hex32(text).map(Self::from_seed)
    }

    /// The seed as 64 hex digits, for writing a key file.
    #[must_use]
    pub fn seed_hex(&self) -> String {
        PublicKey(self.seed()).to_string()
    }

    /// The secret seed, for storing in a key file with restricted permissions.
    #[must_use]
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`, returning the 64-byte signature.
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair {{ public: {}, secret: <hidden> }}", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_through_hex() {
        let key = KeyPair::from_seed([3; 32]).public();
        let text = key.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(PublicKey::from_hex(&text).unwrap(), key);
        assert!(PublicKey::from_hex("abc").is_err());
        assert!(PublicKey::from_hex(&"zz".repeat(32)).is_err());
        let pair = KeyPair::from_seed([7; 32]);
        assert_eq!(KeyPair::from_seed_hex(&pair.seed_hex()).unwrap().public(), pair.public());
    }

    #[test]
    fn debug_hides_the_secret() {
        let pair = KeyPair::from_seed([3; 32]);
        let shown = format!("{pair:?}");
        assert!(shown.contains("<hidden>"));
        assert!(!shown.contains(&"03".repeat(32)));
    }

    #[test]
    fn signatures_verify_only_for_their_message() {
        let pair = KeyPair::generate().unwrap();
        let sig = pair.sign(b"hello");
        pair.public().verify(b"hello", &sig).unwrap();
        assert_eq!(pair.public().verify(b"hellO", &sig), Err(KeyError::BadSignature));
        assert_eq!(pair.public().verify(b"hello", &sig[..63]), Err(KeyError::BadSignature));
    }
}
