//! `--capture DIR`: every page fetched, in order, as an HTML file, with an
//! index (number, method, URL path, status, page kind), for whoever
//! maintains the labels to see what the real portal shows. Every secret is
//! removed before anything touches the disk: form token and other hidden
//! values, password fields, the portal password, token-like query values,
//! session parameters in paths, and any new password (a page after
//! `Confirmer` whose password was not found is not written at all). Session
//! cookies never are: headers are not captured. The files still hold
//! client names and phone numbers. Folder mode 0700, files 0600.

use super::labels::Labels;
use crate::files;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Where removed values were.
pub const REMOVED: &str = "[removed]";
/// Where a new password was.
pub const PASSWORD_REMOVED: &str = "[NEW PASSWORD REMOVED]";

/// The capture folder of a run.
pub struct Capture {
    dir: PathBuf,
    state: Mutex<State>,
    portal_password: Zeroizing<String>,
}

struct State {
    pages: usize,
    index: std::fs::File,
}

/// What is known of a page being captured.
pub struct Page<'a> {
    pub method: &'a str,
    /// The URL's path, without query or session parameters.
    pub path: &'a str,
    pub status: u16,
    /// Its kind, as the client names its steps ("detail", "users"...).
    pub kind: &'a str,
    pub body: &'a str,
    /// New passwords the page may show, to remove.
    pub passwords: &'a [&'a str],
    /// It answers a `Confirmer`: unless a password was found on it, it is
    /// not written (it may show one under a label the client missed).
    pub after_confirm: bool,
}

impl Capture {
    /// Makes `dir` (mode 0700); it must not exist, or be an empty folder.
    pub fn create(dir: &Path, portal_password: &str) -> io::Result<Capture> {
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is not empty", dir.display()),
                    ));
                }
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            Err(e) => return Err(e),
        }
        let mut index = files::create_private(&dir.join("index.txt"))?;
        writeln!(index, "# page method path status kind")?;
        Ok(Capture {
            dir: dir.to_path_buf(),
            state: Mutex::new(State { pages: 0, index }),
            portal_password: Zeroizing::new(portal_password.to_string()),
        })
    }

    /// Writes one page, its secrets removed. A failure is logged, never fatal.
    pub fn page(&self, page: Page, labels: &Labels) {
        if let Err(e) = self.write(page, labels) {
            tracing::warn!("cannot write the capture in {}: {e}", self.dir.display());
        }
    }

    fn write(&self, page: Page, labels: &Labels) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.pages += 1;
        let n = state.pages;
        let shown = page.passwords.iter().any(|p| page.body.contains(p));
        let (file, body) = if page.after_confirm && !shown {
            ("-".to_string(), None)
        } else {
            (
                format!("{n:04}-{}.html", page.kind.replace([' ', '/'], "-")),
                Some(redact(
                    page.body,
                    labels,
                    page.passwords,
                    &self.portal_password,
                )),
            )
        };
        if let Some(body) = body {
            let mut f = files::create_private(&self.dir.join(&file))?;
            f.write_all(body.as_bytes())?;
        }
        writeln!(
            state.index,
            "{n:04} {} {} {} {} {}",
            page.method,
            page.path,
            page.status,
            page.kind.replace(' ', "-"),
            if file == "-" {
                "(not written: it answers Confirmer, and no password was found on it to remove)"
                    .to_string()
            } else {
                file
            }
        )
    }
}

/// Query parameters whose values are secrets (tokens, sessions, keys).
fn secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "tok", "csrf", "xsrf", "sess", "sid", "auth", "key", "nonce", "sig", "pass", "pwd",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// The page with every secret removed.
pub fn redact(body: &str, labels: &Labels, passwords: &[&str], portal_password: &str) -> String {
    let mut out = redact_inputs(body);
    for secret in passwords.iter().copied().chain([portal_password]) {
        if secret.len() >= 4 {
            out = out.replace(secret, PASSWORD_REMOVED);
        }
    }
    out = redact_after_labels(&out, labels);
    redact_urls(&out)
}

/// `value` attributes of hidden and password inputs, and of any input whose
/// name looks like a token.
fn redact_inputs(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let lower = body.to_ascii_lowercase();
    let mut at = 0;
    while let Some(found) = lower[at..].find("<input") {
        let start = at + found;
        let Some(len) = lower[start..].find('>') else {
            break;
        };
        let end = start + len + 1;
        out.push_str(&body[at..start]);
        let tag = &body[start..end];
        let tag_lower = &lower[start..end];
        let kind = attribute(tag, tag_lower, "type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let name = attribute(tag, tag_lower, "name").unwrap_or_default();
        if matches!(kind.as_str(), "hidden" | "password") || secret_parameter(&name) {
            out.push_str(&replace_attribute(tag, tag_lower, "value", REMOVED));
        } else {
            out.push_str(tag);
        }
        at = end;
    }
    out.push_str(&body[at..]);
    out
}

/// The value of an attribute of one tag, and where it is.
fn attribute_span(tag_lower: &str, name: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = tag_lower[from..].find(name) {
        let at = from + found;
        from = at + name.len();
        let before_ok = at > 0
            && tag_lower[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_whitespace());
        let rest = tag_lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let eq = from + (tag_lower[from..].len() - rest.len());
        let value_start =
            eq + 1 + (tag_lower[eq + 1..].len() - tag_lower[eq + 1..].trim_start().len());
        let quote = tag_lower[value_start..].chars().next()?;
        return Some(if quote == '"' || quote == '\'' {
            let close = tag_lower[value_start + 1..].find(quote)? + value_start + 1;
            (value_start + 1, close)
        } else {
            let close = tag_lower[value_start..]
                .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .map_or(tag_lower.len(), |n| n + value_start);
            (value_start, close)
        });
    }
    None
}

fn attribute(tag: &str, tag_lower: &str, name: &str) -> Option<String> {
    attribute_span(tag_lower, name).map(|(a, b)| tag[a..b].to_string())
}

fn replace_attribute(tag: &str, tag_lower: &str, name: &str, with: &str) -> String {
    match attribute_span(tag_lower, name) {
        Some((a, b)) => format!("{}{with}{}", &tag[..a], &tag[b..]),
        None => tag.to_string(),
    }
}

/// The text after a new password's label (the configured one and the
/// guide's), up to the next tag's text: a password the client missed.
fn redact_after_labels(body: &str, labels: &Labels) -> String {
    let mut out = body.to_string();
    let guide = Labels::default();
    for marker in [labels.new_password.as_str(), guide.new_password.as_str()] {
        let words = marker.trim_end_matches(':').trim();
        if words.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(found) = out[from..].to_lowercase().find(&words.to_lowercase()) {
            // Byte offsets of the lowercased text match the original's only
            // for ASCII-preserving case mappings: check before cutting.
            let at = from + found;
            if !out.is_char_boundary(at) || !out.is_char_boundary(at + words.len()) {
                break;
            }
            let after = at + words.len();
            // Skip the colon and markup up to the first text, then remove
            // the first word of text.
            let rest = &out[after..];
            let mut i = 0;
            let bytes = rest.as_bytes();
            loop {
                while i < bytes.len() && (bytes[i] == b':' || bytes[i].is_ascii_whitespace()) {
                    i += 1;
                }
                if i < bytes.len() && bytes[i] == b'<' {
                    match rest[i..].find('>') {
                        Some(n) => i += n + 1,
                        None => break,
                    }
                } else {
                    break;
                }
            }
            let start = after + i;
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || c == '<')
                .map_or(out.len(), |n| start + n);
            if end > start {
                out.replace_range(start..end, PASSWORD_REMOVED);
            }
            from = start + PASSWORD_REMOVED.len().min(out.len() - start);
        }
    }
    out
}

/// Token-like query values and `;` session parameters in the page's URLs.
fn redact_urls(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    // Any `name=value` after `?`, `&` or `&amp;` whose name looks secret.
    while let Some(at) = rest.find(['?', '&', ';']) {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let rest_after_amp = rest.strip_prefix("amp;").unwrap_or(rest);
        let skipped = rest.len() - rest_after_amp.len();
        out.push_str(&rest[..skipped]);
        rest = rest_after_amp;
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if !name.is_empty() && rest[name_end..].starts_with('=') && secret_parameter(name) {
            let value_start = name_end + 1;
            let value_end = rest[value_start..]
                .find(['&', '"', '\'', ' ', '>', '#', ';', '<'])
                .map_or(rest.len(), |n| value_start + n);
            out.push_str(&rest[..value_start]);
            out.push_str(REMOVED);
            rest = &rest[value_end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_removed_and_the_page_stays_readable() {
        let labels = Labels::default();
        let page = r#"<html><head><title>Connexion</title></head><body>
            <form method="post" action="/login;jsessionid=ABCDEF123?_csrf=TOKEN1&amp;next=/home">
            <input type="hidden" name="_csrf" value="TOKEN2">
            <input type=hidden name=tk value=TOKEN3>
            <input name="login" value="revendeur">
            <input type="password" name="pw" value="portal-secret">
            </form>
            <div class="notification">Votre nouveau mot de passe : <strong>Xy7pQ2mN9a</strong><br>Attention</div>
            <a href="/users?id=SRV1&amp;session_id=S3CR3T">Suivant</a>
            <p>portal-secret</p></body></html>"#;
        let out = redact(page, &labels, &[], "portal-secret");
        for secret in [
            "TOKEN1",
            "TOKEN2",
            "TOKEN3",
            "portal-secret",
            "Xy7pQ2mN9a",
            "S3CR3T",
            "ABCDEF123",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        // What a maintainer needs is still there.
        for kept in [
            "Connexion",
            "revendeur",
            "Votre nouveau mot de passe",
            "id=SRV1",
            "Suivant",
            "next=/home",
        ] {
            assert!(out.contains(kept), "{kept} lost: {out}");
        }
        assert!(out.contains(PASSWORD_REMOVED));
        // A known password anywhere on the page.
        let out = redact("<p>code: Zz9Zz9Zz</p>", &labels, &["Zz9Zz9Zz"], "pw");
        assert!(!out.contains("Zz9Zz9Zz"));
    }
}
