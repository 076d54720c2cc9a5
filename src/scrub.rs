//! The one scrubber: whatever sip-rotate writes outside the age files (the
//! terminal, logs, error messages, `--capture`) passes through here, and
//! here every secret the process holds is known.
//!
//! Secrets are learnt where they enter the process: the portal login and
//! password when a portal client is made, each session cookie as it is set,
//! each form or page token as a page hands it out, each new password the
//! moment it is read. Nobody passes a list of secrets to a writer, so no
//! writer can be handed a short one. Pages are also made safe by an
//! allow-list (`capture::sanitize`), which removes secrets nobody could know.
//!
//! The known secrets live in this process's memory only (the process is not
//! dumpable and writes no core): the matcher's copy of them is the price of
//! finding them in any text at once.

use aho_corasick::AhoCorasick;
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::{LazyLock, Mutex, MutexGuard};
use zeroize::Zeroize;

/// What a secret was replaced with.
pub const REMOVED: &str = "[removed]";

/// What a known secret is, for what it is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// The portal login or password.
    Credential,
    /// A session cookie, a form token, a page's token.
    Token,
    /// A new SIP password the portal showed.
    NewPassword,
}

/// Form and page tokens kept at most: a run sees one per page, and only the
/// last ones can still be on a page being written.
const TOKENS_KEPT: usize = 1024;
/// Shorter values are not secrets worth the name (and would match
/// everywhere): the portal's tokens are long, its passwords too.
const SHORTEST: usize = 4;

/// A secret's text, wiped when dropped.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Wiped(String);

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::ops::Deref for Wiped {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

struct Known {
    lasting: Vec<(Wiped, Secret)>,
    tokens: VecDeque<Wiped>,
    new_passwords: HashSet<Wiped>,
    all: HashSet<Wiped>,
    /// Built again when a secret was added since.
    matcher: Option<(AhoCorasick, Vec<Secret>)>,
}

static KNOWN: LazyLock<Mutex<Known>> = LazyLock::new(|| {
    Mutex::new(Known {
        lasting: Vec::new(),
        tokens: VecDeque::new(),
        new_passwords: HashSet::new(),
        all: HashSet::new(),
        matcher: None,
    })
});

fn known() -> MutexGuard<'static, Known> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Remembers a secret, so that nothing written from now on shows it.
pub fn remember(secret: &str, kind: Secret) {
    let secret = secret.trim();
    if secret.chars().count() < SHORTEST {
        return;
    }
    let mut k = known();
    let value = Wiped(secret.to_string());
    if !k.all.insert(value.clone()) {
        return;
    }
    match kind {
        Secret::Token => {
            k.tokens.push_back(value);
            if k.tokens.len() > TOKENS_KEPT
                && let Some(old) = k.tokens.pop_front()
            {
                k.all.remove(&old);
            }
        }
        Secret::NewPassword => {
            k.new_passwords.insert(value.clone());
            k.lasting.push((value, kind));
        }
        Secret::Credential => k.lasting.push((value, kind)),
    }
    k.matcher = None;
}

/// Whether `password` is a new password this process has already read.
pub fn is_known_password(password: &str) -> bool {
    known().new_passwords.contains(&Wiped(password.to_string()))
}

/// `text` without any secret this process knows, nor the user and password
/// of an address written in it (`scheme://user:password@host`).
pub fn secrets(text: &str) -> Cow<'_, str> {
    match userinfo(text) {
        Cow::Borrowed(_) => known_secrets(text),
        Cow::Owned(masked) => Cow::Owned(known_secrets(&masked).into_owned()),
    }
}

/// `text` with the user and password of every address in it removed: what
/// stands between `://` and an `@` before the address's next `/`.
fn userinfo(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The address ends at a space or a quote; its user and password end
        // at its last `@` (a password may hold `/`, `?` or `#`): masking a
        // path's `@` too is the safe side.
        let authority_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>'))
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(user_end) => {
                out.push_str(REMOVED);
                out.push_str(&after[user_end..authority_end]);
            }
            None => out.push_str(&after[..authority_end]),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn known_secrets(text: &str) -> Cow<'_, str> {
    let mut k = known();
    if k.all.is_empty() {
        return Cow::Borrowed(text);
    }
    if k.matcher.is_none() {
        let mut patterns: Vec<&str> = Vec::new();
        let mut kinds = Vec::new();
        for (s, kind) in &k.lasting {
            patterns.push(&s.0);
            kinds.push(*kind);
        }
        for s in &k.tokens {
            patterns.push(&s.0);
            kinds.push(Secret::Token);
        }
        // Case aside: a login is one account whatever its case, and
        // removing a look-alike is the safe side.
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("plain strings make an automaton");
        k.matcher = Some((matcher, kinds));
    }
    let (matcher, kinds) = k.matcher.as_ref().expect("just built");
    if !matcher.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for m in matcher.find_iter(text) {
        out.push_str(&text[at..m.start()]);
        out.push_str(match kinds[m.pattern().as_usize()] {
            Secret::NewPassword => "[NEW PASSWORD REMOVED]",
            _ => REMOVED,
        });
        at = m.end();
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// `text` as a message may show it: no known secret, and every control
/// character (escape sequences a page or a file could carry to a terminal,
/// NUL included) written as `\u{..}`, line ends and tabs aside.
pub fn message(text: &str) -> String {
    let clean = secrets(text);
    if !clean.chars().any(is_unsafe_control) {
        return clean.into_owned();
    }
    clean
        .chars()
        .map(|c| {
            if is_unsafe_control(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn is_unsafe_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// A URL as a message may show it: no user or password in it.
pub fn url(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_secret_is_removed_wherever_it_stands() {
        remember("pw-of-the-portal-1", Secret::Credential);
        remember("tok3nTOKENtok3nTOKEN", Secret::Token);
        remember("Zx9NewPass", Secret::NewPassword);
        let text = "a=pw-of-the-portal-1&b=tok3nTOKENtok3nTOKEN <b>Zx9NewPass</b>";
        let clean = secrets(text);
        assert!(!clean.contains("pw-of-the-portal-1"), "{clean}");
        assert!(!clean.contains("tok3nTOKEN"), "{clean}");
        assert!(!clean.contains("Zx9NewPass"), "{clean}");
        assert!(clean.contains("[NEW PASSWORD REMOVED]"), "{clean}");
        assert!(is_known_password("Zx9NewPass"));
        assert!(!is_known_password("Zx9NewPas"));
        // Too short to be a secret: left as it is.
        remember("abc", Secret::Token);
        assert_eq!(secrets("abc"), "abc");
    }

    #[test]
    fn control_characters_are_escaped_and_line_ends_kept() {
        assert_eq!(message("a\u{0}b\u{1b}[2Jc\nd"), "a\\u{0}b\\u{1b}[2Jc\nd");
    }

    #[test]
    fn an_address_in_any_text_loses_its_user_and_password() {
        assert_eq!(
            secrets("--portal 'https://ops:Top@Secret123@portal.example:99999/' is not a URL"),
            "--portal 'https://[removed]@portal.example:99999/' is not a URL"
        );
        assert_eq!(secrets("mail me@example.org"), "mail me@example.org");
        assert_eq!(
            secrets("'https://ops:S3cr#et/9?9@portal.example/' no"),
            "'https://[removed]@portal.example/' no"
        );
    }

    #[test]
    fn a_url_loses_its_userinfo() {
        let u = url::Url::parse("http://acme:TOPSECRET-9@portal.example/x").unwrap();
        assert_eq!(url(&u), "http://portal.example/x");
    }
}
