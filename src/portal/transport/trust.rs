//! The certificate authorities a run trusts beside the system's
//! (`--ca-file`), for both engines: the HTTP client adds them to its roots,
//! the browser accepts a chain that holds one of their keys.

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::Digest;

/// Authorities trusted beside the system's.
#[derive(Clone, Default)]
pub struct Trust {
    /// The keys of the portal's own certificates, as the HTTP engine
    /// verified them against these authorities: a portal sends its
    /// certificate without its authority's, and Chromium accepts a chain
    /// by a key it holds. Shared by every session and the browser.
    pub(crate) verified: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// For the HTTP engine.
    pub(crate) certificates: Vec<reqwest::Certificate>,
    /// For the browser: each authority's public key as Chromium names it
    /// (`--ignore-certificate-errors-spki-list`: the SHA-256 of its
    /// SubjectPublicKeyInfo, base64). A chain that fails the browser's own
    /// checks passes only if it holds one of these keys.
    pub(crate) keys: Vec<String>,
}

impl Trust {
    /// The certificates of a PEM file; an error says why none could be read.
    pub fn from_pem(bytes: &[u8]) -> Result<Trust, String> {
        let mut trust = Trust::default();
        for der in CertificateDer::pem_slice_iter(bytes) {
            let der = der.map_err(|e| format!("not a PEM certificate ({e})"))?;
            trust.keys.push(
                key_of(&der).map_err(|e| format!("a certificate that cannot be read ({e})"))?,
            );
            trust.certificates.push(
                reqwest::Certificate::from_der(&der)
                    .map_err(|e| format!("a certificate that cannot be read ({e})"))?,
            );
        }
        if trust.certificates.is_empty() {
            return Err("no PEM certificate in it (-----BEGIN CERTIFICATE-----)".into());
        }
        Ok(trust)
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    /// The portal's certificate (DER), as a connection that verified it
    /// against these authorities (and the system's) received it.
    pub(crate) fn verified(&self, leaf: &[u8]) {
        let Ok(key) = key_of(&CertificateDer::from(leaf)) else {
            return;
        };
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if !verified.contains(&key) {
            verified.push(key);
        }
    }

    /// The keys the browser accepts a chain by: the authorities', and the
    /// portal's own as verified.
    pub(crate) fn browser_keys(&self) -> Vec<String> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        self.keys.iter().chain(verified.iter()).cloned().collect()
    }

    /// Whether the HTTP engine verified a certificate of the portal yet.
    pub(crate) fn any_verified(&self) -> bool {
        !self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// A certificate's key as Chromium names it: the SHA-256 of its DER
/// SubjectPublicKeyInfo, base64.
fn key_of(der: &CertificateDer<'_>) -> Result<String, webpki::Error> {
    let cert = webpki::anchor_from_trusted_cert(der)?;
    Ok(
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki_der(
            &cert.subject_public_key_info,
        ))),
    )
}

/// The DER SubjectPublicKeyInfo of its contents (webpki keeps the SEQUENCE's
/// value only): the tag and the length put back.
fn spki_der(value: &[u8]) -> Vec<u8> {
    let mut der = vec![0x30];
    let len = value.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend(bytes);
    }
    der.extend_from_slice(value);
    der
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_put_back_as_der_has_them() {
        assert_eq!(spki_der(&[1, 2]), vec![0x30, 2, 1, 2]);
        let long = vec![7u8; 300];
        let der = spki_der(&long);
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x2c]);
        assert_eq!(der.len(), 304);
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        assert!(Trust::from_pem(b"hello\n").is_err());
        assert!(Trust::from_pem(b"").is_err());
    }
}
