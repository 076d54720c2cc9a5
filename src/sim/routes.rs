//! URL layouts and form field names of the two simulated portal variants.
//!
//! Variant 0 and variant 1 share no path and no input name, so that a client
//! which hard-codes either one fails against the other. Only the simulator
//! reads this module; the client discovers URLs from the pages.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Classic,
    Modern,
}

/// A page of the portal, as the simulator routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Root,
    Login,
    Home,
    MyServices,
    Search,
    Results,
    Service(String),
    Users(String),
    Detail(String),
    Reset(String),
    Confirm(String),
    /// The scripted portal's JSON API: a licence's number and a token that
    /// confirms it.
    ApiInfo(String),
    /// The scripted portal's JSON API: confirms a reset (POST, with the
    /// page's token in a header).
    ApiConfirm(String),
    /// A script of the portal's pages, served without a session (from
    /// another origin with `sim --scripts-from`): the same path on both
    /// variants, as a CDN's address does not follow the portal's.
    Kit,
}

impl Route {
    /// The licence or service a page is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Route::Service(k)
            | Route::Users(k)
            | Route::Detail(k)
            | Route::Reset(k)
            | Route::Confirm(k)
            | Route::ApiInfo(k)
            | Route::ApiConfirm(k) => Some(k),
            _ => None,
        }
    }

    /// Short name used in the request counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Root => "root",
            Route::Login => "login",
            Route::Home => "home",
            Route::MyServices => "mes-services",
            Route::Search => "search",
            Route::Results => "results",
            Route::Service(_) => "service",
            Route::Users(_) => "users",
            Route::Detail(_) => "detail",
            Route::Reset(_) => "reset",
            Route::Confirm(_) => "confirm",
            Route::ApiInfo(_) => "api-info",
            Route::ApiConfirm(_) => "api-confirm",
            Route::Kit => "kit",
        }
    }
}

/// Where `Route::Kit` is.
const KIT: &str = "/assets/portal-kit.js";

/// Input names of one variant.
pub struct Names {
    pub cookie: &'static str,
    pub token: &'static str,
    pub login: &'static str,
    pub password: &'static str,
    pub profile: &'static str,
    pub profile_values: [&'static str; 2],
    pub search: [&'static str; 9],
    pub page: &'static str,
    pub licence: &'static str,
}

pub const CLASSIC_NAMES: Names = Names {
    cookie: "MYOPENIP_SID",
    token: "_csrf",
    login: "login",
    password: "password",
    profile: "profil",
    profile_values: ["revendeur", "operateur"],
    search: [
        "ref_service",
        "client",
        "ref_client",
        "nom_client_final",
        "type_service",
        "ref_fiche",
        "ref_accountcode",
        "adresse_ip",
        "etat",
    ],
    page: "page",
    licence: "licence",
};

pub const MODERN_NAMES: Names = Names {
    cookie: "PHPSESSID",
    token: "tk",
    login: "u",
    password: "pw",
    profile: "role",
    profile_values: ["R", "O"],
    search: ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"],
    page: "p",
    licence: "lic",
};

impl Variant {
    pub fn names(self) -> &'static Names {
        match self {
            Variant::Classic => &CLASSIC_NAMES,
            Variant::Modern => &MODERN_NAMES,
        }
    }

    /// The URL (path and query) of a route.
    pub fn url(self, route: &Route) -> String {
        use Route::*;
        match (self, route) {
            (_, Kit) => KIT.into(),
            (Variant::Classic, Root) => "/".into(),
            (Variant::Classic, Login) => "/connexion".into(),
            (Variant::Classic, Home) => "/accueil".into(),
            (Variant::Classic, MyServices) => "/mes-services".into(),
            (Variant::Classic, Search) => "/services/parametrage".into(),
            (Variant::Classic, Results) => "/services/parametrage/resultats".into(),
            (Variant::Classic, Service(s)) => format!("/services/{s}"),
            (Variant::Classic, Users(s)) => format!("/services/{s}/utilisateurs"),
            (Variant::Classic, Detail(l)) => format!("/licences/{l}"),
            (Variant::Classic, Reset(l)) => format!("/licences/{l}/reinitialiser"),
            (Variant::Classic, Confirm(l)) => format!("/licences/{l}/confirmer"),
            (Variant::Classic, ApiInfo(l)) => format!("/api/licences/{l}"),
            (Variant::Classic, ApiConfirm(l)) => format!("/api/licences/{l}/reinitialisation"),
            (Variant::Modern, Root) => "/portail/".into(),
            (Variant::Modern, Login) => "/portail/auth".into(),
            (Variant::Modern, Home) => "/portail/dashboard".into(),
            (Variant::Modern, MyServices) => "/portail/catalogue".into(),
            (Variant::Modern, Search) => "/portail/svc/find".into(),
            (Variant::Modern, Results) => "/portail/svc/list".into(),
            (Variant::Modern, Service(s)) => format!("/portail/svc/view?id={s}"),
            (Variant::Modern, Users(s)) => format!("/portail/svc/users?id={s}"),
            (Variant::Modern, Detail(l)) => format!("/portail/user?lic={l}"),
            // The licence travels in a hidden field of the form.
            (Variant::Modern, Reset(_)) => "/portail/user/pwd".into(),
            (Variant::Modern, Confirm(_)) => "/portail/user/pwd/ok".into(),
            (Variant::Modern, ApiInfo(l)) => format!("/portail/xhr/user?lic={l}"),
            (Variant::Modern, ApiConfirm(l)) => format!("/portail/xhr/user/pwd?lic={l}"),
        }
    }

    /// Finds the route of a request; `params` holds the query and form fields.
    pub fn route(self, path: &str, params: &HashMap<String, String>) -> Option<Route> {
        let param = |k: &str| params.get(k).cloned();
        if path == KIT {
            return Some(Route::Kit);
        }
        match self {
            Variant::Classic => {
                let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
                Some(match parts.as_slice() {
                    [""] => Route::Root,
                    ["connexion"] => Route::Login,
                    ["accueil"] => Route::Home,
                    ["mes-services"] => Route::MyServices,
                    ["services", "parametrage"] => Route::Search,
                    ["services", "parametrage", "resultats"] => Route::Results,
                    ["services", s] => Route::Service(s.to_string()),
                    ["services", s, "utilisateurs"] => Route::Users(s.to_string()),
                    ["licences", l] => Route::Detail(l.to_string()),
                    ["licences", l, "reinitialiser"] => Route::Reset(l.to_string()),
                    ["licences", l, "confirmer"] => Route::Confirm(l.to_string()),
                    ["api", "licences", l] => Route::ApiInfo(l.to_string()),
                    ["api", "licences", l, "reinitialisation"] => Route::ApiConfirm(l.to_string()),
                    _ => return None,
                })
            }
            Variant::Modern => Some(match path {
                "/portail/" | "/portail" | "/" => Route::Root,
                "/portail/auth" => Route::Login,
                "/portail/dashboard" => Route::Home,
                "/portail/catalogue" => Route::MyServices,
                "/portail/svc/find" => Route::Search,
                "/portail/svc/list" => Route::Results,
                "/portail/svc/view" => Route::Service(param("id")?),
                "/portail/svc/users" => Route::Users(param("id")?),
                "/portail/user" => Route::Detail(param("lic")?),
                "/portail/user/pwd" => Route::Reset(param("lic")?),
                "/portail/user/pwd/ok" => Route::Confirm(param("lic")?),
                "/portail/xhr/user" => Route::ApiInfo(param("lic")?),
                "/portail/xhr/user/pwd" => Route::ApiConfirm(param("lic")?),
                _ => return None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_round_trips_through_its_url() {
        let routes = [
            Route::Root,
            Route::Login,
            Route::Home,
            Route::MyServices,
            Route::Search,
            Route::Results,
            Route::Service("SRV1".into()),
            Route::Users("SRV1".into()),
            Route::Detail("FPC1".into()),
            Route::ApiInfo("FPC1".into()),
            Route::ApiConfirm("FPC1".into()),
            Route::Kit,
        ];
        for v in [Variant::Classic, Variant::Modern] {
            for r in &routes {
                let url = v.url(r);
                let (path, query) = url.split_once('?').unwrap_or((&url, ""));
                let params = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                assert_eq!(v.route(path, &params).as_ref(), Some(r), "{url}");
            }
        }
    }
}
