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
    /// Elements of that kind on the page, closest first.
    pub candidates: Vec<String>,
    /// The element is there, but JavaScript drives it (a link to `#` or
    /// `javascript:`, a button outside any usable form).
    pub javascript: bool,
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
        if self.candidates.is_empty() {
            write!(f, "; no {} there", self.kind.plural())?;
        } else {
            let shown: Vec<String> = self.candidates.iter().map(|c| format!("'{c}'")).collect();
            write!(f, "; {} there: {}", self.kind.plural(), shown.join(", "))?;
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
        candidates: closest(want.words, elements_of(doc, want.kind)),
        javascript: driven_by_javascript(doc, want),
    }
}

/// The link labelled `want`, or what the page has instead.
pub fn need_link(doc: &Html, base: &Url, want: Want) -> Result<Url, Missing> {
    find_link(doc, base, want.words).ok_or_else(|| missing(doc, want))
}

/// What pressing a button or link labelled `want` does, as a browser does
/// it without running the page's scripts.
pub enum Opens {
    /// It submits its form.
    Form(Form),
    /// It shows an element of the same page (a dialog hidden until then):
    /// that element's HTML, read as the next page.
    InPage(String),
    /// It opens a dialog whose content is loaded from this address.
    Remote(Url),
    /// It runs a script of the page and leads nowhere in HTML: only a
    /// browser can press it. Where it is (`css_path`) and what it reads.
    Script { path: String, label: String },
}

/// Whether a button labelled `button` of one of the page's forms stands in
/// a dialog, or in an element hidden until something shows it: a
/// confirmation, whatever its words.
pub fn button_in_dialog(doc: &Html, button: &str) -> bool {
    let opened = opened_ids(doc);
    doc.select(&CONTROLS).any(|c| {
        let control = read_control(doc, c);
        control.is_button
            && is_label(&control.label, button)
            && c.ancestors()
                .filter_map(ElementRef::wrap)
                .any(|a| dialog_like(a, &opened))
    })
}

/// The ids of the elements the page's controls open (`data-target`,
/// `aria-controls`, `href="#id"`...): dialogs, whatever their markup.
fn opened_ids(doc: &Html) -> std::collections::HashSet<String> {
    doc.select(&PRESSABLE)
        .filter_map(|c| {
            let toggle = c.attr("data-toggle").or_else(|| c.attr("data-bs-toggle"));
            // Tabs and menus show parts of a page, not a confirmation.
            if toggle.is_some_and(|t| {
                ["tab", "pill", "dropdown"]
                    .iter()
                    .any(|k| t.trim().eq_ignore_ascii_case(k))
            }) {
                return None;
            }
            target_of(c)
                // A link to a part of the page opens it only when it says
                // it toggles something (a skip link does not).
                .or_else(|| {
                    c.attr("href")
                        .filter(|h| h.trim().starts_with('#') && toggle.is_some())
                })
                .map(|id| id.trim().trim_start_matches('#').to_string())
        })
        .filter(|id| !id.is_empty())
        .collect()
}

/// A dialog, or an element hidden until a script or a button shows it.
fn dialog_like(e: ElementRef<'_>, opened: &std::collections::HashSet<String>) -> bool {
    let el = e.value();
    let is = |name: &str, value: &str| {
        el.attr(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    matches!(el.name(), "dialog" | "template")
        || (el.name() == "details" && el.attr("open").is_none())
        || is("role", "dialog")
        || is("role", "alertdialog")
        || is("aria-modal", "true")
        || is("aria-hidden", "true")
        || el.attr("popover").is_some()
        || el.attr("hidden").is_some()
        || el.attr("id").is_some_and(|id| opened.contains(id))
        || el.attr("style").is_some_and(|st| {
            let st: String = st
                .to_ascii_lowercase()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            st.contains("display:none") || st.contains("visibility:hidden")
        })
}

/// A CSS selector that names `el` alone in its page: the element's place
/// among its parent's children, up from the root. Valid for the page as it
/// was read; what acts on the live page reads it right before.
pub fn css_path(el: ElementRef<'_>) -> String {
    let mut parts = Vec::new();
    let mut node = Some(el);
    while let Some(e) = node {
        let index = e.prev_siblings().filter(|n| n.value().is_element()).count() + 1;
        parts.push(format!("{}:nth-child({index})", e.value().name()));
        node = e.parent().and_then(ElementRef::wrap);
    }
    parts.reverse();
    parts.join(" > ")
}

static PRESSABLE: LazyLock<Selector> =
    LazyLock::new(|| sel("button, input[type=button i], input[type=submit i], a"));

/// The control labelled `want` and what pressing it does: a form's button,
/// or a button or link that opens an element of the page (`data-target`,
/// `data-bs-target`, `aria-controls`, `popovertarget`, `commandfor`,
/// `href="#id"`) or a dialog loaded from an address it names (a `href`
/// with `data-toggle="modal"`, `data-remote`, `data-url`, `hx-get`). A
/// control that only runs a script is not one: what the page has instead
/// is returned, saying so.
pub fn need_control(doc: &Html, base: &Url, want: Want) -> Result<Opens, Missing> {
    if let Ok(form) = need_form_with_button(doc, base, want) {
        return Ok(Opens::Form(form));
    }
    for c in doc.select(&PRESSABLE) {
        // What a person reads on it: a link's or a button's text, an
        // input's value.
        let label = match c.value().name() {
            "input" => c.attr("value").unwrap_or("").to_string(),
            _ => text_of(c),
        };
        if !is_label(&label, want.words) {
            continue;
        }
        // A remote dialog names its target too: the content it loads
        // goes there.
        if let Some(url) = remote_dialog(c).and_then(|href| base.join(href.trim()).ok()) {
            return Ok(Opens::Remote(url));
        }
        if let Some(shown) = opened_element(doc, c) {
            return Ok(Opens::InPage(shown.html()));
        }
        // There, and worded so, but only a script makes it do anything: a
        // button of no form, a link to `#` or `javascript:`.
        let leads_nowhere = match c.value().name() {
            "a" => c.attr("href").is_none_or(|h| {
                let h = h.trim().to_ascii_lowercase();
                h.is_empty() || h.starts_with('#') || h.starts_with("javascript:")
            }),
            _ => true,
        };
        if leads_nowhere {
            return Ok(Opens::Script {
                path: css_path(c),
                label,
            });
        }
    }
    Err(missing(doc, want))
}

/// The attributes by which a control names the element it opens.
const TARGETS: [&str; 5] = [
    "data-target",
    "data-bs-target",
    "aria-controls",
    "popovertarget",
    "commandfor",
];

/// The element id (or `#id`) a control names as the one it opens.
fn target_of<'a>(control: ElementRef<'a>) -> Option<&'a str> {
    TARGETS.iter().find_map(|a| control.value().attr(a))
}

/// The element of the page a control shows, by the id it names.
fn opened_element<'a>(doc: &'a Html, control: ElementRef<'a>) -> Option<ElementRef<'a>> {
    let id = target_of(control)
        .or_else(|| {
            control
                .attr("href")
                .filter(|h| h.trim().starts_with('#') && h.trim().len() > 1)
        })?
        .trim()
        .trim_start_matches('#');
    doc.select(&ALL_ELEMENTS).find(|e| e.attr("id") == Some(id))
}

/// The address a control loads a dialog's content from, if it names one.
fn remote_dialog(control: ElementRef<'_>) -> Option<&str> {
    let modal = ["data-toggle", "data-bs-toggle"].iter().any(|a| {
        control
            .attr(a)
            .is_some_and(|v| v.eq_ignore_ascii_case("modal"))
    });
    ["data-remote", "data-url", "hx-get"]
        .iter()
        .find_map(|a| control.attr(a))
        .or_else(|| control.attr("href").filter(|_| modal))
        .filter(|h| {
            let h = h.trim().to_ascii_lowercase();
            !h.is_empty() && !h.starts_with('#') && !h.starts_with("javascript:")
        })
}

static ALL_ELEMENTS: LazyLock<Selector> = LazyLock::new(|| sel("*"));

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

/// Table contents keyed by the wanted headers.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone)]
pub struct Table {
    /// One entry per data row, one cell per wanted header, in the order
    /// asked (the optional ones after the others, empty where absent).
    pub rows: Vec<Vec<Cell>>,
    /// For each optional header, whether the table has it.
    pub optional: Vec<bool>,
}

/// Finds the first table whose header cells include every one of `headers`,
/// in any order, and reads its data rows.
pub fn find_table(doc: &Html, base: &Url, headers: &[&str]) -> Option<Table> {
    find_table_with(doc, base, headers, &[])
}

/// Like `find_table`, with `optional` headers read where the table has them.
pub fn find_table_with(
    doc: &Html,
    base: &Url,
    headers: &[&str],
    optional: &[&str],
) -> Option<Table> {
    for table in doc.select(&TABLES) {
        // Rows of this table, not of tables nested in it.
        let rows: Vec<ElementRef> = table
            .select(&ROWS)
            .filter(|r| {
                r.ancestors()
                    .filter_map(ElementRef::wrap)
                    .find(|a| a.value().name() == "table")
                    == Some(table)
            })
            .collect();
        let Some(head) = rows.first() else { continue };
        let head_cells: Vec<String> = cells_of(*head).map(text_of).collect();
        let Some(columns) = headers
            .iter()
            .map(|h| head_cells.iter().position(|c| is_label(c, h)))
            .collect::<Option<Vec<usize>>>()
        else {
            continue;
        };
        let extra: Vec<Option<usize>> = optional
            .iter()
            .map(|h| head_cells.iter().position(|c| is_label(c, h)))
            .collect();
        let cell = |e: ElementRef| Cell {
            text: text_of(e),
            links: e
                .select(&ANCHORS)
                .filter_map(|a| link_of(a, base))
                .collect(),
        };
        let rows = rows[1..]
            .iter()
            .map(|r| cells_of(*r).collect::<Vec<_>>())
            .filter(|cells| columns.iter().all(|&c| c < cells.len()))
            .map(|cells| {
                let mut row: Vec<Cell> = columns.iter().map(|&c| cell(cells[c])).collect();
                row.extend(extra.iter().map(|c| match c {
                    Some(c) if *c < cells.len() => cell(cells[*c]),
                    _ => Cell {
                        text: String::new(),
                        links: Vec::new(),
                    },
                }));
                row
            })
            .collect();
        return Some(Table {
            rows,
            optional: extra.iter().map(Option::is_some).collect(),
        });
    }
    None
}

fn cells_of(row: ElementRef<'_>) -> impl Iterator<Item = ElementRef<'_>> {
    row.child_elements()
        .filter(|c| matches!(c.value().name(), "td" | "th"))
}

/// A form control as the form will submit it.
#[derive(Clone)]
struct Control {
    name: Option<String>,
    kind: String,
    value: String,
    /// What is submitted for this control, if anything (unchecked boxes: nothing).
    submitted: Option<String>,
    label: String,
    /// Visible text of each option of a select: (text, value).
    options: Vec<(String, String)>,
    is_button: bool,
}

/// A form ready to be filled and submitted. Once filled it may hold the
/// portal password: `Debug` shows names only, and values are wiped on drop.
#[derive(Clone)]
pub struct Form {
    pub method_post: bool,
    pub action: Url,
    controls: Vec<Control>,
    /// Its action is `javascript:`: it cannot be sent as a browser would
    /// without running the page's script.
    pub javascript: bool,
    /// The heading of the page it was read from, for messages.
    page: String,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .controls
            .iter()
            .filter_map(|c| c.name.as_deref())
            .collect();
        write!(
            f,
            "Form({} {} [{}])",
            if self.method_post { "POST" } else { "GET" },
            &self.action[..url::Position::AfterPath],
            names.join(", ")
        )
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for c in &mut self.controls {
            if let Some(v) = c.submitted.as_mut() {
                zeroize::Zeroize::zeroize(v);
            }
        }
    }
}

/// Errors in filling a form; they name the label so that a changed portal is easy to diagnose.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("no field labelled '{0}'")]
    NoField(String),
    #[error("no choice '{choice}' in the field labelled '{field}'")]
    NoChoice { field: String, choice: String },
    #[error("no radio button labelled '{0}'")]
    NoRadio(String),
    #[error("no button labelled '{0}'")]
    NoButton(String),
}

impl Form {
    fn read(doc: &Html, form: ElementRef<'_>, base: &Url) -> Form {
        let method_post = form
            .attr("method")
            .is_some_and(|m| m.eq_ignore_ascii_case("post"));
        let action = form
            .attr("action")
            .filter(|a| !a.trim().is_empty())
            .and_then(|a| base.join(a.trim()).ok())
            .unwrap_or_else(|| base.clone());
        let controls = form
            .select(&CONTROLS)
            .map(|c| read_control(doc, c))
            .collect();
        let javascript = form
            .attr("action")
            .is_some_and(|a| a.trim().to_ascii_lowercase().starts_with("javascript:"));
        Form {
            method_post,
            action,
            controls,
            javascript,
            page: page_title(doc),
        }
    }

    /// Whether the form has the control `want` names.
    pub fn has(&self, want: Want) -> bool {
        self.controls.iter().any(|c| match want.kind {
            Kind::Button => c.is_button && is_label(&c.label, want.words),
            Kind::Field => !c.is_button && c.kind != "radio" && is_label(&c.label, want.words),
            Kind::Choice => {
                (c.kind == "radio" && is_label(&c.label, want.words))
                    || c.options.iter().any(|(t, _)| is_label(t, want.words))
            }
            _ => false,
        })
    }

    /// What the form has instead of `want`, from its own controls.
    pub fn missing(&self, want: Want) -> Missing {
        let candidates = self.controls.iter().flat_map(|c| -> Vec<String> {
            match want.kind {
                Kind::Button if c.is_button => vec![c.label.clone()],
                Kind::Field if !c.is_button && !matches!(c.kind.as_str(), "hidden" | "radio") => {
                    vec![c.label.clone()]
                }
                Kind::Choice if c.kind == "radio" => vec![c.label.clone()],
                Kind::Choice => c.options.iter().map(|(t, _)| t.clone()).collect(),
                _ => Vec::new(),
            }
        });
        Missing {
            key: want.key,
            words: want.words.to_string(),
            kind: want.kind,
            page: self.page.clone(),
            candidates: closest(want.words, candidates),
            javascript: self.javascript,
        }
    }

    /// The form that holds a button labelled `button`.
    pub fn with_button(doc: &Html, base: &Url, button: &str) -> Option<Form> {
        doc.select(&FORMS)
            .map(|f| Form::read(doc, f, base))
            .find(|f| {
                f.controls
                    .iter()
                    .any(|c| c.is_button && is_label(&c.label, button))
            })
    }

    /// The form that holds a field labelled `field`.
    pub fn with_field(doc: &Html, base: &Url, field: &str) -> Option<Form> {
        doc.select(&FORMS)
            .map(|f| Form::read(doc, f, base))
            .find(|f| {
                f.controls
                    .iter()
                    .any(|c| !c.is_button && is_label(&c.label, field))
            })
    }

    /// Types `value` into the field labelled `label`.
    pub fn fill(&mut self, label: &str, value: &str) -> Result<(), FormError> {
        let c = self
            .controls
            .iter_mut()
            .find(|c| {
                !c.is_button
                    && c.kind != "radio"
                    && c.kind != "checkbox"
                    && is_label(&c.label, label)
            })
            .ok_or_else(|| FormError::NoField(label.into()))?;
        c.submitted = Some(value.to_string());
        Ok(())
    }

    /// Chooses the option whose visible text is `choice` in the select labelled `label`.
    pub fn select(&mut self, label: &str, choice: &str) -> Result<(), FormError> {
        let c = self
            .controls
            .iter_mut()
            .find(|c| c.kind == "select" && is_label(&c.label, label))
            .ok_or_else(|| FormError::NoField(label.into()))?;
        let value = c
            .options
            .iter()
            .find(|(text, _)| is_label(text, choice))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| FormError::NoChoice {
                field: label.into(),
                choice: choice.into(),
            })?;
        c.submitted = Some(value);
        Ok(())
    }

    /// Checks the radio button whose visible text is `label`, unchecking its group.
    pub fn choose(&mut self, label: &str) -> Result<(), FormError> {
        let i = self
            .controls
            .iter()
            .position(|c| c.kind == "radio" && is_label(&c.label, label))
            .ok_or_else(|| FormError::NoRadio(label.into()))?;
        let group = self.controls[i].name.clone();
        for c in self
            .controls
            .iter_mut()
            .filter(|c| c.kind == "radio" && c.name == group)
        {
            c.submitted = None;
        }
        self.controls[i].submitted = Some(self.controls[i].value.clone());
        Ok(())
    }

    /// The name/value pairs sent when the button labelled `button` is pressed:
    /// hidden fields as they are, fields as filled, the button's own pair.
    pub fn submission(&self, button: &str) -> Result<Vec<(String, String)>, FormError> {
        let pressed = self
            .controls
            .iter()
            .position(|c| c.is_button && is_label(&c.label, button))
            .ok_or_else(|| FormError::NoButton(button.into()))?;
        Ok(self
            .controls
            .iter()
            .enumerate()
            .filter(|(i, c)| !c.is_button || *i == pressed)
            .filter_map(|(i, c)| {
                let name = c.name.clone()?;
                let value = if i == pressed {
                    Some(c.value.clone())
                } else {
                    c.submitted.clone()
                }?;
                Some((name, value))
            })
            .collect())
    }
}

fn read_control(doc: &Html, c: ElementRef<'_>) -> Control {
    let tag = c.value().name();
    let kind = match tag {
        "input" => c.attr("type").unwrap_or("text").to_ascii_lowercase(),
        "button" => c.attr("type").unwrap_or("submit").to_ascii_lowercase(),
        other => other.to_string(),
    };
    let is_button =
        matches!(kind.as_str(), "submit" | "image") && matches!(tag, "input" | "button");
    let value = match tag {
        "textarea" => c.text().collect(),
        _ => c
            .attr("value")
            .unwrap_or(if kind == "radio" || kind == "checkbox" {
                "on"
            } else {
                ""
            })
            .to_string(),
    };
    let options: Vec<(String, String)> = if tag == "select" {
        c.select(&OPTIONS)
            .map(|o| {
                let text = text_of(o);
                let v = o
                    .attr("value")
                    .map(str::to_string)
                    .unwrap_or_else(|| text.clone());
                (text, v)
            })
            .collect()
    } else {
        Vec::new()
    };
    let submitted = match kind.as_str() {
        "radio" | "checkbox" => c.attr("checked").map(|_| value.clone()),
        "select" => c
            .select(&OPTIONS)
            .find(|o| o.attr("selected").is_some())
            .or_else(|| c.select(&OPTIONS).next())
            .map(|o| {
                o.attr("value")
                    .map(str::to_string)
                    .unwrap_or_else(|| text_of(o))
            }),
        "submit" | "image" | "reset" | "file" => None,
        _ => Some(value.clone()),
    };
    let label = if is_button {
        match tag {
            "button" => text_of(c),
            _ => value.clone(),
        }
    } else {
        label_for(doc, c)
    };
    Control {
        name: c.attr("name").map(str::to_string),
        kind,
        value,
        submitted,
        label,
        options,
        is_button,
    }
}

/// The text of the `<label for=ID>` of a control, or of the `<label>` that wraps it.
fn label_for(doc: &Html, c: ElementRef<'_>) -> String {
    if let Some(id) = c.attr("id")
        && let Some(l) = doc.select(&LABELS).find(|l| l.attr("for") == Some(id))
    {
        return text_without(l, &["select", "textarea"]);
    }
    c.ancestors()
        .filter_map(ElementRef::wrap)
        .find(|a| a.value().name() == "label")
        .map(|l| text_without(l, &["select", "textarea"]))
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_in_a_dialog_whatever_its_markup_is_a_dialog_s() {
        let modal = Html::parse_document(
            r##"<button type="button" data-bs-toggle="modal" data-bs-target="#m">Réinitialiser mot de passe SIP</button>
               <div class="modal fade" id="m" tabindex="-1"><form method="post" action="/x"><button>Réinitialiser</button></form></div>"##,
        );
        assert!(button_in_dialog(&modal, "Réinitialiser"));
        for wrapper in [
            r#"<div aria-hidden="true">"#,
            r#"<div style="display:&#10; none">"#,
            r#"<div style="visibility: hidden">"#,
            "<details>",
            "<template>",
        ] {
            let doc = Html::parse_document(&format!(
                "{wrapper}<form method=post action=/x><button>Valider</button></form>"
            ));
            assert!(button_in_dialog(&doc, "Valider"), "{wrapper}");
        }
        let plain = Html::parse_document(
            r##"<a href="#main">Aller au contenu</a><main id="main"><form method=post action=/x><button>Réinitialiser</button></form></main>"##,
        );
        assert!(!button_in_dialog(&plain, "Réinitialiser"));
    }

    #[test]
    fn a_label_that_goes_on_to_its_own_colon_is_not_the_one_wanted() {
        let doc = Html::parse_document("<p>Votre nouveau mot de passe est : <b>Xy7pQ2mN9a</b></p>");
        assert!(texts_after(&doc, "Votre nouveau mot de passe").is_empty());
        assert!(texts_after(&doc, "Votre nouveau mot de passe :").is_empty());
        let doc = Html::parse_document("<p>Votre nouveau mot de passe : <b>Xy7pQ2mN9a</b></p>");
        assert_eq!(
            texts_after(&doc, "Votre nouveau mot de passe"),
            ["Xy7pQ2mN9a"]
        );
    }

    fn base() -> Url {
        Url::parse("https://portal.example/a/b").unwrap()
    }

    #[test]
    fn labels_ignore_decorations_and_case_but_not_accents() {
        assert!(is_label("Détail >", "Détail"));
        assert!(is_label("✓ Valider", "valider"));
        assert!(is_label("Suivant ›", "Suivant"));
        assert!(is_label(
            "» Paramétrage / Monitoring",
            "Paramétrage / Monitoring"
        ));
        assert!(is_label("Réf. accountcode :", "Réf. accountcode"));
        assert!(is_label("Admin.", "Admin."));
        assert!(!is_label("Detail", "Détail"));
        assert!(!is_label("Détails", "Détail"));
    }

    #[test]
    fn control_characters_never_come_out_of_a_page() {
        let doc = Html::parse_fragment("<td>Jean\u{1b}]0;pwned\u{7}\u{1b}[2J Dupont</td>");
        let text = text_of(doc.root_element());
        assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
        assert_eq!(text, "Jean ]0;pwned [2J Dupont");
    }

    #[test]
    fn a_missing_label_names_the_page_and_the_closest_candidates() {
        let doc = Html::parse_document(
            "<title>MyOpenIP</title><h1>Réinitialiser mot de passe SIP</h1>\
             <form method=post action=/ok><button>Valider</button><button name=x>Annuler</button></form>\
             <a href='#'>Mes Services</a> <a href='javascript:go()'>Suivant</a>",
        );
        let want = Want {
            key: "confirm_button",
            words: "Confirmer",
            kind: Kind::Button,
        };
        let m = missing(&doc, want);
        assert_eq!(m.page, "Réinitialiser mot de passe SIP");
        assert_eq!(m.candidates, ["Valider", "Annuler"]);
        assert!(!m.javascript);
        assert_eq!(
            m.to_string(),
            "no button 'Confirmer' on 'Réinitialiser mot de passe SIP'; buttons there: 'Valider', 'Annuler'; set confirm_button in the labels file"
        );
        // A link the page drives with JavaScript says so.
        for words in ["Mes Services", "Suivant"] {
            let want = Want {
                key: "next",
                words,
                kind: Kind::Link,
            };
            let m = need_link(&doc, &base(), want).unwrap_err();
            assert!(m.javascript, "{words}");
            assert!(m.to_string().contains("JavaScript"), "{m}");
        }
        // A form sent by a script.
        let doc = Html::parse_document(
            "<form action='javascript:send()'><input type=submit value=Confirmer></form>",
        );
        let want = Want {
            key: "confirm_button",
            words: "Confirmer",
            kind: Kind::Button,
        };
        let m = need_form_with_button(&doc, &base(), want).unwrap_err();
        assert!(m.javascript);
    }

    #[test]
    fn text_reads_like_a_browser() {
        let doc = Html::parse_fragment("<td><a href=x>FPC172947</a><br>Licence&nbsp;simple</td>");
        assert_eq!(text_of(doc.root_element()), "FPC172947 Licence simple");
        let doc = Html::parse_fragment("<p><b>Ré</b>f. du <i>client</i></p>");
        assert_eq!(text_of(doc.root_element()), "Réf. du client");
    }

    #[test]
    fn forms_are_filled_by_labels_with_hidden_fields_kept() {
        let doc = Html::parse_document(
            r#"<form method="post" action="../go"><input type=hidden name=t value=abc>
            <label for=x>Login</label><input id=x name=zz>
            <label>Mot de passe <input type=password name=yy></label>
            <label><input type=radio name=r value=1 checked> Revendeur</label>
            <label><input type=radio name=r value=2> MB / Opérateur</label>
            <label for=s>Type</label><select id=s name=ty><option value="">Tous</option><option value=7>MetaCentrex</option></select>
            <button name=b value=v>✓ Valider</button></form>"#,
        );
        let mut f = Form::with_button(&doc, &base(), "Valider").unwrap();
        assert!(f.method_post);
        assert_eq!(f.action.as_str(), "https://portal.example/go");
        f.fill("Login", "me").unwrap();
        f.fill("Mot de passe", "pw").unwrap();
        assert!(
            !format!("{f:?}").contains("\"pw\"") && format!("{f:?}").contains("yy"),
            "{f:?}"
        );
        f.choose("MB / Opérateur").unwrap();
        f.select("Type", "MetaCentrex").unwrap();
        let pairs = f.submission("Valider").unwrap();
        let expected: Vec<(String, String)> = [
            ("t", "abc"),
            ("zz", "me"),
            ("yy", "pw"),
            ("r", "2"),
            ("ty", "7"),
            ("b", "v"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(pairs, expected);
        assert_eq!(f.fill("Nope", "x"), Err(FormError::NoField("Nope".into())));
        assert!(is_login_page(&doc, "Mot de passe"));
    }

    #[test]
    fn tables_are_found_by_headers_in_any_order() {
        let doc = Html::parse_document(
            "<table><tr><td><b>Nom</b></td><td>Licence</td><td>SDA</td><td>Action</td></tr>\
             <tr><td>Jean</td><td><a href=/d/1>FPC1</a><br>Licence simple</td><td>01.84.00.00.01</td><td><a href='#'>🔄</a> <a href=/d/1>Détail ›</a></td></tr></table>",
        );
        let t = find_table(&doc, &base(), &["Licence", "SDA", "Action"]).unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0][0].text, "FPC1 Licence simple");
        assert_eq!(t.rows[0][1].text, "01.84.00.00.01");
        let detail = t.rows[0][2]
            .links
            .iter()
            .find(|l| is_label(&l.text, "Détail"))
            .unwrap();
        assert_eq!(detail.url.as_str(), "https://portal.example/d/1");
        assert!(find_table(&doc, &base(), &["Licence", "Compte client"]).is_none());
    }

    #[test]
    fn label_value_fields_and_markers() {
        let doc = Html::parse_document(
            "<table><tr><th>SDA</th><td></td></tr><tr><th>Licence</th><td>FPC1 Licence SVI</td></tr></table>\
             <dl><dt>Nom :</dt><dd><span>Jean</span></dd></dl>\
             <div role=alert><p>Votre nouveau mot de passe :<span><code>Ab3xYz</code></span></p><p>Attention</p></div>",
        );
        assert_eq!(field_value(&doc, "SDA").as_deref(), Some(""));
        assert_eq!(
            field_value(&doc, "Licence").as_deref(),
            Some("FPC1 Licence SVI")
        );
        assert_eq!(field_value(&doc, "Nom").as_deref(), Some("Jean"));
        let after = text_after(&doc, "Votre nouveau mot de passe :").unwrap();
        assert_eq!(after.split_whitespace().next(), Some("Ab3xYz"));
    }

    #[test]
    fn charset_from_header_then_meta() {
        let bytes = encoding_rs::WINDOWS_1252
            .encode("<meta charset=\"windows-1252\"><p>Réf.</p>")
            .0
            .into_owned();
        assert!(decode(&bytes, Some("text/html")).contains("Réf."));
        assert!(decode("é".as_bytes(), Some("text/html; charset=utf-8")).contains('é'));
    }
}
