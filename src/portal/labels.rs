//! The words the client looks for on the portal's pages, in one place.
//!
//! Defaults are the operator's guide's words. If the real portal words a label
//! differently, a TOML file given with `--labels FILE` overrides any of them
//! (unknown keys are refused, so that a typo does not go unnoticed).

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Labels {
    // Login page.
    pub login_field: String,
    pub password_field: String,
    pub profile_reseller: String,
    pub profile_operator: String,
    pub login_button: String,
    // Navigation to the search page.
    pub my_services: String,
    pub settings: String,
    // Search form and its results.
    pub search_client_ref: String,
    pub search_service_type: String,
    pub metacentrex: String,
    pub search_button: String,
    pub column_service_ref: String,
    pub column_client_ref: String,
    pub column_service_type: String,
    pub column_action: String,
    pub configure: String,
    pub next: String,
    // Service page and users table.
    pub users_tab: String,
    pub column_licence: String,
    pub column_sda: String,
    pub column_name: String,
    /// Whether the phone is registered (not needed to reset).
    pub column_state: String,
    /// The value of that column for a registered phone.
    pub state_connected: String,
    /// Its value for a phone that is not.
    pub state_disconnected: String,
    pub detail: String,
    // Detail page.
    pub field_accountcode: String,
    pub field_licence: String,
    pub field_sda: String,
    pub reset_button: String,
    // Confirmation and result.
    pub associated_number: String,
    pub confirm_button: String,
    pub new_password: String,
}

impl Default for Labels {
    fn default() -> Self {
        let s = |t: &str| t.to_string();
        Labels {
            login_field: s("Login"),
            password_field: s("Mot de passe"),
            profile_reseller: s("Revendeur"),
            profile_operator: s("MB / Opérateur"),
            login_button: s("Valider"),
            my_services: s("Mes Services"),
            settings: s("Paramétrage / Monitoring"),
            search_client_ref: s("Réf. du client"),
            search_service_type: s("Type de service"),
            metacentrex: s("MetaCentrex"),
            search_button: s("Rechercher"),
            column_service_ref: s("Réf. du service"),
            column_client_ref: s("Compte client"),
            column_service_type: s("Type de service"),
            column_action: s("Action"),
            configure: s("Paramétrer"),
            next: s("Suivant"),
            users_tab: s("Utilisateurs"),
            column_licence: s("Licence"),
            column_sda: s("SDA"),
            column_name: s("Nom"),
            column_state: s("État"),
            state_connected: s("Connecté"),
            state_disconnected: s("Déconnecté"),
            detail: s("Détail"),
            field_accountcode: s("Réf. accountcode"),
            field_licence: s("Licence"),
            field_sda: s("SDA"),
            reset_button: s("Réinitialiser mot de passe SIP"),
            associated_number: s("Numéro associé :"),
            confirm_button: s("Confirmer"),
            new_password: s("Votre nouveau mot de passe :"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read the labels file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("labels file {path}: {message}")]
    Parse { path: String, message: String },
    /// Two labels the walk may look for on one page read alike: a press
    /// meant for one could land on the other (`reset_button` equal to
    /// `confirm_button` would commit a reset where the walk expects none).
    #[error(
        "labels file {path}: {first} and {second} both read '{words}', and the walk looks for both {step}: one could be taken for the other. Give each the words the portal shows for it"
    )]
    Clash {
        path: String,
        first: &'static str,
        second: &'static str,
        words: String,
        step: &'static str,
    },
}

/// The labels the walk may look for on one page, by step. The detail page
/// and the confirmation are one step: the confirmation may be a dialog of
/// the detail page.
const SAME_PAGE: &[(&str, &[&str])] = &[
    (
        "on the login page",
        &[
            "login_field",
            "password_field",
            "profile_reseller",
            "profile_operator",
            "login_button",
        ],
    ),
    (
        "on the search page",
        &["search_client_ref", "search_service_type", "search_button"],
    ),
    (
        "on the search results",
        &[
            "column_service_ref",
            "column_client_ref",
            "column_service_type",
            "column_action",
            "configure",
            "next",
        ],
    ),
    (
        "on the users table",
        &[
            "column_licence",
            "column_sda",
            "column_name",
            "column_state",
            "column_action",
            "detail",
            "next",
            "state_connected",
            "state_disconnected",
        ],
    ),
    (
        "on the detail page and its confirmation",
        &[
            "field_accountcode",
            "field_licence",
            "field_sda",
            "reset_button",
            "associated_number",
            "confirm_button",
            "new_password",
        ],
    ),
];

impl Labels {
    /// Words one label differently; an unknown key is an error.
    pub fn set(&mut self, key: &str, words: &str) -> Result<(), String> {
        let mut table = toml::Value::try_from(&*self).expect("plain strings");
        let map = table.as_table_mut().expect("a struct is a table");
        if !map.contains_key(key) {
            return Err(format!(
                "no label '{key}': the keys are those of a labels file"
            ));
        }
        map.insert(key.to_string(), toml::Value::String(words.to_string()));
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        Ok(())
    }

    /// The guide's labels, overridden by the keys of a TOML file.
    pub fn from_file(path: &Path) -> Result<Labels, LabelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let labels: Labels = toml::from_str(&text).map_err(|e| LabelsError::Parse {
            path: path.display().to_string(),
            message: e.to_string().trim().to_string(),
        })?;
        match labels.clash() {
            Some((first, second, words, step)) => Err(LabelsError::Clash {
                path: path.display().to_string(),
                first,
                second,
                words,
                step,
            }),
            None => Ok(labels),
        }
    }

    /// The words of a label, by key.
    fn words(&self, key: &str) -> String {
        toml::Value::try_from(self)
            .ok()
            .and_then(|t| t.get(key).and_then(|v| v.as_str()).map(str::to_string))
            .unwrap_or_default()
    }

    /// Two labels of one page that read alike, if any: their keys, their
    /// words and the step.
    pub fn clash(&self) -> Option<(&'static str, &'static str, String, &'static str)> {
        for (step, keys) in SAME_PAGE {
            for (i, first) in keys.iter().enumerate() {
                let words = self.words(first);
                for second in &keys[i + 1..] {
                    if super::html::is_label(&self.words(second), &words) {
                        return Some((first, second, words, step));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_some_labels_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.toml");
        std::fs::write(&p, "confirm_button = \"Valider la réinitialisation\"\n").unwrap();
        let l = Labels::from_file(&p).unwrap();
        assert_eq!(l.confirm_button, "Valider la réinitialisation");
        assert_eq!(l.detail, "Détail");
        std::fs::write(&p, "confirm_buton = \"x\"\n").unwrap();
        let e = Labels::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("confirm_buton"), "{e}");
    }

    #[test]
    fn the_guide_has_no_clash_and_a_reset_button_worded_like_confirm_is_refused() {
        assert!(Labels::default().clash().is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("labels.toml");
        for file in [
            "reset_button = \"Confirmer\"\n",
            "reset_button = \"✓ confirmer :\"\n",
            "field_licence = \"Confirmer\"\n",
        ] {
            std::fs::write(&p, file).unwrap();
            let e = Labels::from_file(&p).unwrap_err();
            assert!(matches!(e, LabelsError::Clash { .. }), "{file}: {e}");
        }
    }
}
