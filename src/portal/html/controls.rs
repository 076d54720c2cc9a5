//! Controls that only open something in the page (a dialog, a remote
//! dialog): what the walk follows without a script.

use super::*;

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
pub(super) fn opened_ids(doc: &Html) -> std::collections::HashSet<String> {
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
pub(super) fn dialog_like(e: ElementRef<'_>, opened: &std::collections::HashSet<String>) -> bool {
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

pub(super) static PRESSABLE: LazyLock<Selector> =
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
pub(super) const TARGETS: [&str; 5] = [
    "data-target",
    "data-bs-target",
    "aria-controls",
    "popovertarget",
    "commandfor",
];

/// The element id (or `#id`) a control names as the one it opens.
pub(super) fn target_of<'a>(control: ElementRef<'a>) -> Option<&'a str> {
    TARGETS.iter().find_map(|a| control.value().attr(a))
}

/// The element of the page a control shows, by the id it names.
pub(super) fn opened_element<'a>(doc: &'a Html, control: ElementRef<'a>) -> Option<ElementRef<'a>> {
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
pub(super) fn remote_dialog(control: ElementRef<'_>) -> Option<&str> {
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

pub(super) static ALL_ELEMENTS: LazyLock<Selector> = LazyLock::new(|| sel("*"));
