//! The agent's ed25519 device key: created on first start, kept in a file only its owner can
//! read.

use std::io::Write;
use std::path::Path;

use gridmesh_wire::KeyPair;

/// Loads the key at `path`, or creates it (mode 0600) when the file does not exist.
///
/// # Errors
/// The file cannot be read or written, holds no key, or the system has no randomness.
pub fn load_or_create(path: &Path) -> anyhow::Result<KeyPair> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => KeyPair::from_seed_hex(text.trim())
            .with_context(|| format!("{} does not hold a device key (64 hex digits)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0_u8; 32];
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a new key: {e}"))?;
            let key = KeyPair::from_seed(seed);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f =
                options.open(path).with_context(|| format!("creating the key file {}", path.display()))?;
            f.write_all(key.seed_hex().as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            f.sync_all().with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), public_key = %key.public(), "device key created");
            Ok(key)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the key file {}", path.display()))),
    }
}
