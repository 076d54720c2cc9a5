//! The identities `decrypt -i` takes, as age and rage take them: age
//! identity files (several keys each), passphrase-protected identity files
//! (made with `age -p`), and SSH private keys (`ssh-ed25519`, `ssh-rsa`),
//! encrypted ones included. A passphrase is asked once per file, on the
//! terminal, when the file is read: a journal of a thousand entries does
//! not ask a thousand times.

use super::VaultError;
use age::armor::ArmoredReader;
use age::secrecy::SecretString;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// An identity file is small; a larger one is not an identity file.
const MAX_IDENTITY_FILE: u64 = 1 << 20;

pub type Identities = Vec<Box<dyn age::Identity>>;

fn failed(path: &Path, message: impl Into<String>) -> VaultError {
    VaultError::Identity {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads every identity of `files`.
pub fn read_identities(files: &[PathBuf]) -> Result<Identities, VaultError> {
    let mut all: Identities = Vec::new();
    for path in files {
        let mut bytes = Zeroizing::new(Vec::new());
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_IDENTITY_FILE + 1).read_to_end(&mut bytes))
            .map_err(|e| failed(path, e.to_string()))?;
        if bytes.len() as u64 > MAX_IDENTITY_FILE {
            return Err(failed(path, "too large to be an identity file"));
        }
        all.extend(identities_of(path, &bytes)?);
    }
    Ok(all)
}

fn identities_of(path: &Path, bytes: &[u8]) -> Result<Identities, VaultError> {
    let name = path.display().to_string();
    // An SSH private key, encrypted or not.
    if let Ok(ssh) = age::ssh::Identity::from_buffer(bytes, Some(name.clone())) {
        return match ssh {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(ssh)]),
            age::ssh::Identity::Encrypted(key) => {
                let passphrase = ask(path, &format!("Passphrase of the SSH key {name}"))?;
                let key = key
                    .decrypt(passphrase)
                    .map_err(|_| failed(path, "wrong passphrase for this SSH key"))?;
                Ok(vec![Box::new(age::ssh::Identity::Unencrypted(key))])
            }
            age::ssh::Identity::Unsupported(_) => Err(failed(
                path,
                "an SSH key of a kind age cannot use: only ssh-ed25519 and ssh-rsa keys decrypt",
            )),
        };
    }
    // An identity file protected by a passphrase (`age -p`).
    let armored = bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----");
    if armored || bytes.starts_with(b"age-encryption.org/") {
        let decryptor = age::Decryptor::new_buffered(ArmoredReader::new(bytes))
            .map_err(|e| failed(path, e.to_string()))?;
        if !decryptor.is_scrypt() {
            return Err(failed(
                path,
                "an age-encrypted file, not an identity: give the identity file (sip-rotate keygen or age-keygen wrote it)",
            ));
        }
        let passphrase = ask(path, &format!("Passphrase of the identity file {name}"))?;
        let scrypt = age::scrypt::Identity::new(passphrase);
        let mut plain = Zeroizing::new(Vec::new());
        decryptor
            .decrypt(std::iter::once(&scrypt as &dyn age::Identity))
            .and_then(|mut r| r.read_to_end(&mut plain).map_err(Into::into))
            .map_err(|_| failed(path, "wrong passphrase for this identity file"))?;
        return identity_lines(path, &plain);
    }
    identity_lines(path, bytes)
}

/// The age identities of a plain identity file, one per line ('#' starts a
/// comment). A bad line is named by its number, never shown.
fn identity_lines(path: &Path, bytes: &[u8]) -> Result<Identities, VaultError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| failed(path, "not an identity file (not text)"))?;
    let mut all: Identities = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<age::x25519::Identity>() {
            Ok(id) => all.push(Box::new(id)),
            Err(_) => {
                let what = if line.starts_with("age1") {
                    "a public key (a recipient), not an identity: give the identity file that holds its secret key"
                } else if line.starts_with("ssh-") {
                    "an SSH public key: give the private key (e.g. ~/.ssh/id_ed25519, not the .pub file)"
                } else {
                    "not an age identity (AGE-SECRET-KEY-1...), an SSH private key or a passphrase-protected identity file"
                };
                return Err(VaultError::IdentityLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    what,
                });
            }
        }
    }
    if all.is_empty() {
        return Err(failed(path, "no identity in this file"));
    }
    Ok(all)
}

/// Asks for a passphrase on the terminal, never echoed; refused clearly
/// when there is none (cron, a pipe without a terminal).
fn ask(path: &Path, description: &str) -> Result<SecretString, VaultError> {
    if std::fs::File::open("/dev/tty").is_err() {
        return Err(VaultError::NoTerminalForPassphrase {
            path: path.to_path_buf(),
        });
    }
    rpassword::prompt_password(format!("{description}: "))
        .map(SecretString::from)
        .map_err(|e| failed(path, format!("no passphrase read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_by_number_and_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = super::super::generate_identity();
        use age::secrecy::ExposeSecret;
        let file = dir.path().join("id.txt");
        std::fs::write(
            &file,
            format!(
                "# two keys\n{}\n{}\n",
                secret.expose_secret(),
                secret.expose_secret()
            ),
        )
        .unwrap();
        assert_eq!(
            read_identities(std::slice::from_ref(&file)).unwrap().len(),
            2
        );
        std::fs::write(&file, format!("# a recipient\n{public}\n")).unwrap();
        let e = read_identities(std::slice::from_ref(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 2") && e.contains("public key"), "{e}");
        assert!(!e.contains(&public), "{e}");
    }
}
