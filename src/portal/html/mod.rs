//! Reading portal pages the way the portal contract allows: by the text a
//! person sees. Links are found by their text, form fields by their labels,
//! tables by their header cells, values by the label before them. Nothing in
//! here knows a URL path, an input name or a CSS class of any portal.
//!
//! `scraper::Html` is not `Send`, so every function here parses and returns
//! owned values; nothing of a parsed page is held across an `.await`.

use ego_tree::NodeRef;
use scraper::{ElementRef, Html, Node, Selector};
use std::sync::LazyLock;
use url::Url;

mod controls;
mod form;
mod table;
#[cfg(test)]
mod tests;

pub use controls::*;
pub use form::*;
pub use table::*;

/// The text of an element as a browser shows it: block elements and `<br>`
/// separate words, white space (NBSP included) is collapsed.
pub fn text_of(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    push_text(*el, &mut out, &[]);
    collapse(&out)
}

/// Like `text_of`, leaving out the subtrees of the named elements.
fn text_without(el: ElementRef<'_>, skip: &[&str]) -> String {
    let mut out = String::new();
    push_text(*el, &mut out, skip);
    collapse(&out)
}

const BLOCKS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
    "option",
    "select",
    "button",
    "title",
];

fn push_text(node: NodeRef<'_, Node>, out: &mut String, skip: &[&str]) {
    match node.value() {
        Node::Text(t) => out.push_str(t),
        Node::Element(e) => {
            let name = e.name();
            if matches!(name, "script" | "style" | "template") || skip.contains(&name) {
                return;
            }
            let block = name == "br" || BLOCKS.contains(&name);
            if block {
                out.push(' ');
            }
            for child in node.children() {
                push_text(child, out, skip);
            }
            if block {
                out.push(' ');
            }
        }
        _ => {
            for child in node.children() {
                push_text(child, out, skip);
            }
        }
    }
}

/// Collapses white space (NBSP included) and trims. Control characters
/// (escape sequences a page could carry to a terminal) count as spaces.
pub fn collapse(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c == '\u{a0}' || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The comparable form of a label: collapsed, without decorations (arrows,
/// check marks, icons, `>`, `:` ...) around its words, lower case. Accents
/// are kept: they matter.
pub fn label_key(s: &str) -> String {
    let collapsed = collapse(s);
    let keep = |c: char| c.is_alphanumeric() || c == '.' || c == ')' || c == '\'';
    let start = collapsed.trim_start_matches(|c: char| !(c.is_alphanumeric() || c == '('));
    let trimmed = start.trim_end_matches(|c: char| !keep(c));
    trimmed.to_lowercase()
}

/// A value as a person reads it: collapsed, without the icons and arrows
/// around its words (`🔄 Connecté` reads `Connecté`). Case is kept.
pub fn label_text(s: &str) -> String {
    let collapsed = collapse(s);
    let keep = |c: char| c.is_alphanumeric() || c == '.' || c == ')' || c == '\'';
    collapsed
        .trim_start_matches(|c: char| !(c.is_alphanumeric() || c == '('))
        .trim_end_matches(|c: char| !keep(c))
        .to_string()
}

/// Whether `text` reads as `label`.
pub fn is_label(text: &str, label: &str) -> bool {
    let key = label_key(text);
    !key.is_empty() && key == label_key(label)
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("static selector")
}

static ANCHORS: LazyLock<Selector> = LazyLock::new(|| sel("a[href]"));
static FORMS: LazyLock<Selector> = LazyLock::new(|| sel("form"));
static INPUTS: LazyLock<Selector> = LazyLock::new(|| sel("input"));
static CONTROLS: LazyLock<Selector> = LazyLock::new(|| sel("input, select, textarea, button"));
static LABELS: LazyLock<Selector> = LazyLock::new(|| sel("label"));
static OPTIONS: LazyLock<Selector> = LazyLock::new(|| sel("option"));
static TABLES: LazyLock<Selector> = LazyLock::new(|| sel("table"));
static ROWS: LazyLock<Selector> = LazyLock::new(|| sel("tr"));
static ALL: LazyLock<Selector> = LazyLock::new(|| sel("body *"));
static BODY: LazyLock<Selector> = LazyLock::new(|| sel("body"));
static META: LazyLock<Selector> = LazyLock::new(|| sel("meta"));
static TOKEN_HOLDERS: LazyLock<Selector> =
    LazyLock::new(|| sel("input[type=hidden i][value], meta[content]"));

/// The address a page's links and form actions resolve against, as a
/// browser resolves them: its first `<base href>` (itself resolved against
/// the page's address), else the page's address. (A base on another
/// origin leads there: the transport refuses it like any other link.)
pub fn document_base(body: &str, url: Url) -> Url {
    // Most pages have none: only those that do are parsed for it here.
    let has_base = body
        .as_bytes()
        .windows(5)
        .any(|w| w.eq_ignore_ascii_case(b"<base"));
    if !has_base {
        return url;
    }
    static BASE: LazyLock<Selector> = LazyLock::new(|| sel("base[href]"));
    let doc = Html::parse_document(body);
    doc.select(&BASE)
        .next()
        .and_then(|b| url.join(b.attr("href")?.trim()).ok())
        .unwrap_or(url)
}

/// Tells the scrubber the page's tokens (hidden values and `<meta>`
/// contents that look like one: a long run without spaces), so that no
/// message or capture shows them, wherever on a page they come back.
pub fn learn_tokens(doc: &Html) {
    for el in doc.select(&TOKEN_HOLDERS) {
        let value = el.attr("value").or_else(|| el.attr("content"));
        if let Some(v) = value.map(str::trim)
            && v.len() >= 16
            && !v.contains(char::is_whitespace)
        {
            crate::scrub::remember(v, crate::scrub::Secret::Token);
        }
    }
}

/// What kind of element a label names, for messages and candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Link,
    Button,
    Field,
    /// A select option or a radio button, chosen by its text.
    Choice,
    /// A table's header cell.
    Column,
    /// The label of a label/value field.
    LabelValue,
    /// A text the page shows, before a value.
    Text,
    /// A value a table's cells show.
    Value,
}

impl Kind {
    fn singular(self) -> &'static str {
        match self {
            Kind::Link => "link",
            Kind::Button => "button",
            Kind::Field => "field",
            Kind::Choice => "choice",
            Kind::Column => "column",
            Kind::LabelValue => "label",
            Kind::Text => "text",
            Kind::Value => "value",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Link => "links",
            Kind::Button => "buttons",
            Kind::Field => "fields",
            Kind::Choice => "choices",
            Kind::Column => "columns",
            Kind::LabelValue => "labels",
            Kind::Text => "texts",
            Kind::Value => "values",
        }
    }
}

/// A label looked for: its key in a labels file, its words, its kind.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    pub key: &'static str,
    pub words: &'a str,
    pub kind: Kind,
}

/// A label not found on a page, and what is there instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub key: &'static str,
    pub words: String,
    pub kind: Kind,
    /// The page's heading (or title).
    pub page: String,
    /// Elements of that kind on the page, closest first; `None`: not
    /// quoted (see `withheld`).
    pub candidates: Option<Vec<String>>,
    /// The element is there, but JavaScript drives it (a link to `#` or
    /// `javascript:`, a button outside any usable form).
    pub javascript: bool,
    /// The page looked at is not the one the step asked for: it went on
    /// elsewhere by itself (see `Fetched::went_on`), and no label fixes that.
    pub went_on: Option<String>,
}

impl Missing {
    /// Without the page's own words: a page after `Confirmer` may hold the
    /// new password where no label says (helper-19: a notification worded
    /// otherwise had its password quoted in the log and the report).
    pub fn withheld(mut self) -> Missing {
        self.candidates = None;
        // Its heading too (helper-20: the password put in the title).
        self.page = "the page after Confirmer".to_string();
        self
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, words, page) = (self.kind.singular(), &self.words, &self.page);
        if self.javascript {
            return write!(
                f,
                "the {kind} '{words}' on '{page}' is driven by JavaScript (no address to follow or to send a form to), which sip-rotate does not run"
            );
        }
        write!(f, "no {kind} '{words}' on '{page}'")?;
        if let Some(went_on) = &self.went_on {
            return write!(
                f,
                ": {went_on}; no label fixes that: send a capture (sip-rotate check --capture DIR) to whoever maintains sip-rotate"
            );
        }
        match &self.candidates {
            None => write!(
                f,
                "; its {} are not quoted (the page after Confirmer may show the new password in words not looked for)",
                self.kind.plural()
            )?,
            Some(none) if none.is_empty() => write!(f, "; no {} there", self.kind.plural())?,
            Some(candidates) => {
                let shown: Vec<String> = candidates.iter().map(|c| format!("'{c}'")).collect();
                write!(f, "; {} there: {}", self.kind.plural(), shown.join(", "))?;
            }
        }
        write!(f, "; set {} in the labels file", self.key)
    }
}

/// The page's heading as a person sees it: its first `h1`, else its title.
pub fn page_title(doc: &Html) -> String {
    static H1: LazyLock<Selector> = LazyLock::new(|| sel("h1"));
    static TITLE: LazyLock<Selector> = LazyLock::new(|| sel("title"));
    doc.select(&H1)
        .chain(doc.select(&TITLE))
        .map(text_of)
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "the page".into())
}

/// `candidates`, the closest to `words` first (at most 5, each once).
pub fn closest(words: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let wanted = label_key(words);
    let mut seen = std::collections::HashSet::new();
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .filter(|c| !label_key(c).is_empty() && seen.insert(label_key(c)))
        .map(|c| (strsim::normalized_levenshtein(&wanted, &label_key(&c)), c))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

/// Every element of `kind` on a page, by its label.
fn elements_of(doc: &Html, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Link => doc.select(&ANCHORS).map(text_of).collect(),
        // What a person reads on each button; one in a dialog (or an element
        // hidden until shown) is said to be there: it may be a
        // confirmation's, not the step's.
        Kind::Button => {
            let opened = opened_ids(doc);
            doc.select(&CONTROLS)
                .filter_map(|c| {
                    let control = read_control(doc, c);
                    let label = match c.value().name() {
                        "button" => text_of(c),
                        _ if control.is_button || control.kind == "button" => {
                            c.attr("value").unwrap_or("").to_string()
                        }
                        _ => return None,
                    };
                    let in_dialog = c
                        .ancestors()
                        .filter_map(ElementRef::wrap)
                        .any(|a| dialog_like(a, &opened));
                    Some(if in_dialog {
                        format!("{label} (in a dialog: maybe a confirmation's)")
                    } else {
                        label
                    })
                })
                .collect()
        }
        Kind::Field => doc
            .select(&CONTROLS)
            .map(|c| read_control(doc, c))
            .filter(|c| !c.is_button && !matches!(c.kind.as_str(), "hidden" | "button" | "radio"))
            .map(|c| c.label)
            .collect(),
        Kind::Choice => doc
            .select(&CONTROLS)
            .map(|c| read_control(doc, c))
            .flat_map(|c| {
                if c.kind == "radio" {
                    vec![c.label]
                } else {
                    c.options.into_iter().map(|(text, _)| text).collect()
                }
            })
            .collect(),
        Kind::Column => doc
            .select(&TABLES)
            .filter_map(|t| t.select(&ROWS).next())
            .flat_map(|r| cells_of(r).map(text_of).collect::<Vec<_>>())
            .collect(),
        Kind::Value => doc
            .select(&TABLES)
            .flat_map(|t| t.select(&ROWS).skip(1))
            .flat_map(|r| cells_of(r).map(text_of).collect::<Vec<_>>())
            .collect(),
        Kind::LabelValue => doc
            .select(&ALL)
            .filter(|e| e.next_siblings().any(|n| ElementRef::wrap(n).is_some()))
            .map(text_of)
            .filter(|t| !t.is_empty() && t.chars().count() <= 40)
            .collect(),
        Kind::Text => doc
            .select(&ALL)
            .filter(|e| !e.child_elements().any(|c| !text_of(c).is_empty()))
            .map(text_of)
            .filter(|t| t.contains(':') && t.chars().count() <= 60)
            .map(|t| format!("{}:", t.split(':').next().unwrap_or("").trim()))
            .collect(),
    }
}

/// Whether the page holds the wanted element, driven by JavaScript: a link
/// whose target is `#` or `javascript:`, a button of no form or of a form
/// whose action is `javascript:`.
fn driven_by_javascript(doc: &Html, want: Want) -> bool {
    match want.kind {
        Kind::Link => {
            doc.select(&ANCHORS).any(|a| {
                let href = a.attr("href").unwrap_or("").trim().to_ascii_lowercase();
                is_label(&text_of(a), want.words)
                    && (href.is_empty() || href.starts_with('#') || href.starts_with("javascript:"))
            }) || doc.select(&ALL).any(|e| {
                e.value().name() == "a"
                    && e.attr("href").is_none()
                    && is_label(&text_of(e), want.words)
            })
        }
        Kind::Button => doc.select(&CONTROLS).any(|c| {
            let control = read_control(doc, c);
            if !(control.is_button || control.kind == "button")
                || !is_label(&control.label, want.words)
            {
                return false;
            }
            let form = c
                .ancestors()
                .filter_map(ElementRef::wrap)
                .find(|a| a.value().name() == "form");
            match form {
                None => true,
                Some(f) => {
                    control.kind == "button"
                        || f.attr("action").is_some_and(|a| {
                            a.trim().to_ascii_lowercase().starts_with("javascript:")
                        })
                }
            }
        }),
        _ => false,
    }
}

/// What a page has instead of `want`.
pub fn missing(doc: &Html, want: Want) -> Missing {
    Missing {
        key: want.key,
        words: want.words.to_string(),
        kind: want.kind,
        page: page_title(doc),
        candidates: Some(closest(want.words, elements_of(doc, want.kind))),
        javascript: driven_by_javascript(doc, want),
        went_on: None,
    }
}

/// The link labelled `want`, or what the page has instead.
pub fn need_link(doc: &Html, base: &Url, want: Want) -> Result<Url, Missing> {
    find_link(doc, base, want.words).ok_or_else(|| missing(doc, want))
}

/// The form with the button `want`, or what the page has instead.
pub fn need_form_with_button(doc: &Html, base: &Url, want: Want) -> Result<Form, Missing> {
    Form::with_button(doc, base, want.words)
        .filter(|f| !f.javascript)
        .ok_or_else(|| missing(doc, want))
}

/// A table with the `want`ed header cells, or the first one missing.
pub fn need_table(doc: &Html, base: &Url, wants: &[Want]) -> Result<Table, Missing> {
    let words: Vec<&str> = wants.iter().map(|w| w.words).collect();
    if let Some(table) = find_table(doc, base, &words) {
        return Ok(table);
    }
    let headers = elements_of(doc, Kind::Column);
    let absent = wants
        .iter()
        .find(|w| !headers.iter().any(|h| is_label(h, w.words)))
        .unwrap_or(&wants[0]);
    Err(missing(doc, *absent))
}

/// Whether the page has a header cell `want`.
pub fn has_column(doc: &Html, want: Want) -> bool {
    elements_of(doc, Kind::Column)
        .iter()
        .any(|h| is_label(h, want.words))
}

/// Whether one of the `wants`ed header cells is on the page.
pub fn has_column_among(doc: &Html, wants: &[Want]) -> bool {
    let headers = elements_of(doc, Kind::Column);
    wants
        .iter()
        .any(|w| headers.iter().any(|h| is_label(h, w.words)))
}

/// A link found on a page: its label and its absolute target.
#[derive(Debug, Clone)]
pub struct Link {
    pub text: String,
    pub url: Url,
}

fn link_of(a: ElementRef<'_>, base: &Url) -> Option<Link> {
    let href = a.attr("href")?.trim();
    if href.is_empty() || href.starts_with('#') || href.starts_with("javascript:") {
        return None;
    }
    Some(Link {
        text: text_of(a),
        url: base.join(href).ok()?,
    })
}

/// The first link labelled `label` inside `scope`.
pub fn find_link_in(scope: ElementRef<'_>, base: &Url, label: &str) -> Option<Url> {
    scope
        .select(&ANCHORS)
        .filter(|a| is_label(&text_of(*a), label))
        .find_map(|a| link_of(a, base))
        .map(|l| l.url)
}

/// The first link labelled `label` on the page.
pub fn find_link(doc: &Html, base: &Url, label: &str) -> Option<Url> {
    find_link_in(doc.root_element(), base, label)
}

/// The text of the page's body as a browser shows it.
pub fn page_text(doc: &Html) -> String {
    doc.select(&BODY)
        .next()
        .map(text_of)
        .unwrap_or_else(|| text_of(doc.root_element()))
}

/// The text that follows `marker` (compared like a label, ignoring case) in
/// the page text, up to the end of the page: at its first place.
pub fn text_after(doc: &Html, marker: &str) -> Option<String> {
    texts_after(doc, marker).into_iter().next()
}

/// The text that follows each place of `marker` in the page text. The
/// marker must stand as a whole: a word ends where it ends (`mot de passe`
/// is not `mot de passes`), and a marker written with a colon is followed
/// by one (`mot de passe :` is not `mot de passe SIP :`), spaces of any
/// kind between.
pub fn texts_after(doc: &Html, marker: &str) -> Vec<String> {
    let text = page_text(doc);
    let chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars
        .iter()
        .map(|c| c.to_lowercase().next().unwrap_or(*c))
        .collect();
    let wanted: Vec<char> = label_key(marker).chars().collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let with_colon = collapse(marker).trim_end().ends_with(':');
    let space = |c: char| c.is_whitespace() || c == '\u{a0}';
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = lower
        .get(from..)
        .and_then(|rest| {
            rest.windows(wanted.len())
                .position(|w| w == wanted.as_slice())
        })
        .map(|n| from + n)
    {
        from = at + 1;
        let end = at + wanted.len();
        if chars.get(end).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        let mut next = end;
        while chars.get(next).is_some_and(|c| space(*c)) {
            next += 1;
        }
        if with_colon && chars.get(next) != Some(&':') {
            continue;
        }
        // Without a colon of its own, the label must not go on: a word then
        // a colon (`mot de passe est :`) means the page's label is longer.
        if !with_colon && chars.get(next) != Some(&':') {
            let mut after_word = next;
            while chars.get(after_word).is_some_and(|c| !space(*c)) {
                after_word += 1;
            }
            while chars.get(after_word).is_some_and(|c| space(*c)) {
                after_word += 1;
            }
            if chars.get(after_word) == Some(&':') {
                continue;
            }
        }
        let rest: String = chars[next..].iter().collect();
        found.push(
            rest.trim_start_matches(|c: char| space(c) || c == ':')
                .to_string(),
        );
    }
    found
}

/// The value of a label/value field: the deepest element whose whole text is
/// `label`, and the text of its next sibling element.
pub fn field_value(doc: &Html, label: &str) -> Option<String> {
    doc.select(&ALL)
        .filter(|e| is_label(&text_of(*e), label))
        .filter(|e| !e.child_elements().any(|c| is_label(&text_of(c), label)))
        .find_map(|e| e.next_siblings().find_map(ElementRef::wrap).map(text_of))
}

/// Whether the page is a login page: it has a password field labelled `password_label`.
pub fn is_login_page(doc: &Html, password_label: &str) -> bool {
    // Asked of every page fetched: look at password inputs only.
    doc.select(&INPUTS)
        .filter(|i| {
            i.attr("type")
                .is_some_and(|t| t.eq_ignore_ascii_case("password"))
        })
        .any(|i| is_label(&label_for(doc, i), password_label))
}

/// Decodes a page's bytes: charset from the `Content-Type` header, else from
/// `<meta charset>` / `<meta http-equiv>`, else UTF-8.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> String {
    let from_header = content_type
        .and_then(|ct| {
            ct.split(';')
                .find_map(|p| p.trim().strip_prefix("charset="))
        })
        .and_then(|c| encoding_rs::Encoding::for_label(c.trim_matches('"').as_bytes()));
    let encoding = from_header
        .or_else(|| meta_charset(bytes))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

fn meta_charset(bytes: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    // The declaration must be in the first 1024 bytes, which are ASCII-compatible.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
    let doc = Html::parse_document(&head);
    doc.select(&META).find_map(|m| {
        let label = m.attr("charset").map(str::to_string).or_else(|| {
            let content = m.attr("content")?;
            let at = content.to_ascii_lowercase().find("charset=")?;
            Some(content[at + 8..].trim().to_string())
        })?;
        encoding_rs::Encoding::for_label(label.trim().as_bytes())
    })
}
