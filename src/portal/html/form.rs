//! Forms as a person fills them: each field found by its label, hidden
//! fields kept as the page has them, values wiped on drop.

use super::*;

/// A form control as the form will submit it.
#[derive(Clone)]
pub(super) struct Control {
    pub(super) name: Option<String>,
    pub(super) kind: String,
    pub(super) value: String,
    /// What is submitted for this control, if anything (unchecked boxes: nothing).
    pub(super) submitted: Option<String>,
    pub(super) label: String,
    /// Visible text of each option of a select: (text, value).
    pub(super) options: Vec<(String, String)>,
    pub(super) is_button: bool,
}

/// A form ready to be filled and submitted. Once filled it may hold the
/// portal password: `Debug` shows names only, and values are wiped on drop.
#[derive(Clone)]
pub struct Form {
    pub method_post: bool,
    pub action: Url,
    pub(super) controls: Vec<Control>,
    /// Its action is `javascript:`: it cannot be sent as a browser would
    /// without running the page's script.
    pub javascript: bool,
    /// The heading of the page it was read from, for messages.
    pub(super) page: String,
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
    pub(super) fn read(doc: &Html, form: ElementRef<'_>, base: &Url) -> Form {
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
            candidates: Some(closest(want.words, candidates)),
            javascript: self.javascript,
            went_on: None,
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

pub(super) fn read_control(doc: &Html, c: ElementRef<'_>) -> Control {
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
pub(super) fn label_for(doc: &Html, c: ElementRef<'_>) -> String {
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
