//! The server's signing key, kept in a file readable only by its owner.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use gridmesh_wire::KeyPair;

/// Reads the key at `path`, or creates one there (mode 0600) when the file does not exist.
///
/// # Errors
/// When the file cannot be read or written, or does not hold 64 hex digits.
pub fn load_or_create(path: &Path) -> anyhow::Result<KeyPair> {
    match std::fs::read_to_string(path) {
        Ok(text) => KeyPair::from_seed_hex(&text).with_context(|| {
            format!(
                "{} (GRIDMESH_SERVER_KEY_FILE / --server-key-file) must hold the key seed as 64 hex digits",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().context("creating the server key")?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(path)
                .with_context(|| format!("creating the server key file {}", path.display()))?;
            writeln!(file, "{}", key.seed_hex()).context("writing the server key")?;
            tracing::info!(path = %path.display(), public_key = %key.public(), "server key created");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the server key file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gridmesh-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("server.key");
        let created = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(created.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "nonsense").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(format!("{err:#}").contains("64 hex digits"), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
