//! Each request served: latency, faults and 429s first, then the session,
//! then the page of its route in the portal's shape.

use super::*;

/// A page as served, with what the shapes add to every page: a token in
/// `<meta>`, a notification shown again, a hostile portal's script.
pub(super) async fn handle(State(sh): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    if !sh.has(Shape::FlashAgain)
        && !sh.has(Shape::LinkTokens)
        && !sh.has(Shape::BaseHref)
        && sh.cfg.hostile.page_script.is_none()
    {
        return serve_page(sh, req).await;
    }
    let mut req = req;
    if sh.has(Shape::BaseHref)
        && let Some(inner) = req.uri().path().strip_prefix(BASE)
    {
        let inner = match req.uri().query() {
            Some(q) => format!("{inner}?{q}"),
            None => inner.to_string(),
        };
        if let Ok(uri) = inner.parse() {
            *req.uri_mut() = uri;
        }
    }
    let sid = cookie(req.headers(), sh.cfg.variant.names().cookie);
    let again = sh.take_again(sid.as_deref());
    let mut response = serve_page(sh.clone(), req).await;
    if sh.has(Shape::BaseHref)
        && let Some(to) = response.headers().get(header::LOCATION)
        && let Ok(to) = to.to_str()
        && to.starts_with('/')
        && let Ok(moved) = HeaderValue::from_str(&format!("{BASE}{to}"))
    {
        response.headers_mut().insert(header::LOCATION, moved);
    }
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/html"));
    if response.status() != StatusCode::OK || !is_html {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let v = sh.cfg.variant;
    let mut page = match v {
        Variant::Classic => String::from_utf8_lossy(&bytes).into_owned(),
        Variant::Modern => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
    };
    if sh.has(Shape::LinkTokens)
        && let Some(at) = page.find("<head>")
    {
        let token = sh.new_token(sid.as_deref(), None);
        page.insert_str(
            at + "<head>".len(),
            &format!("<meta name=\"csrf-token\" content=\"{token}\">"),
        );
    }
    if let Some(script) = &sh.cfg.hostile.page_script {
        let at = page.find("<head>").map_or(0, |at| at + "<head>".len());
        page.insert_str(at, &format!("<script>{script}</script>"));
    }
    if let Some(notice) = again
        && let Some(at) = page.find("<body>")
    {
        page.insert_str(at + "<body>".len(), &notice);
    }
    if sh.has(Shape::BaseHref) {
        // Every address relative to the base, as a browser would resolve it.
        page = page
            .replace("href=\"/", "href=\"")
            .replace("action=\"/", "action=\"");
        if let Some(at) = page.find("<head>") {
            page.insert_str(at + "<head>".len(), &format!("<base href=\"{BASE}/\">"));
        } else {
            page.insert_str(0, &format!("<base href=\"{BASE}/\">"));
        }
    }
    let mut response = html(v, StatusCode::OK, page);
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    *response.headers_mut() = headers;
    response
}

impl Shared {
    /// A committed reset whose answer is lost, at `--drop-rate`: the
    /// connection is closed unanswered (this never returns then).
    async fn maybe_drop(&self, parts: &axum::http::request::Parts) {
        if self.roll(self.cfg.drop_rate) {
            self.counters.lock().unwrap().dropped_confirmations += 1;
            if let Some(DropConnection(killer)) = parts.extensions.get::<DropConnection>() {
                killer.notify_one();
                std::future::pending::<()>().await;
            }
        }
    }
}

fn kit_script() -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/javascript")
        .body(Body::from(pages::portal_kit()))
        .unwrap()
}

pub(super) async fn serve_page(sh: Arc<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let v = sh.cfg.variant;
    let mut params: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if parts.method == Method::POST {
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        params.extend(url::form_urlencoded::parse(&bytes).into_owned());
    }
    let Some(route) = v.route(parts.uri.path(), &params) else {
        return sh.not_found();
    };
    {
        let mut counters = sh.counters.lock().unwrap();
        *counters.requests.entry(route.kind()).or_default() += 1;
        // Under the counters' lock, so that the log's order is the order of arrival.
        if let Some(mut log) = sh.access_log.as_ref() {
            let line = format!("{} {}\n", sh.started.elapsed().as_millis(), route.kind());
            if let Err(e) = log.write_all(line.as_bytes()) {
                eprintln!("sim: cannot write the access log: {e}");
            }
        }
    }

    if !sh.within_rate_limit() {
        sh.counters.lock().unwrap().too_many_requests += 1;
        let mut r = html(
            v,
            StatusCode::TOO_MANY_REQUESTS,
            pages::message(v, "Trop de requêtes", "Réessayez plus tard."),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    if sh.cfg.latency_ms > 0 {
        let jitter = sh.state.lock().unwrap().rng.random_range(0.5..1.5);
        tokio::time::sleep(Duration::from_secs_f64(
            sh.cfg.latency_ms as f64 / 1000.0 * jitter,
        ))
        .await;
    }
    let this_page = |wanted: &str| match wanted.split_once(':') {
        Some((kind, key)) => kind == route.kind() && route.key() == Some(key),
        None => wanted == route.kind(),
    };
    if let Some((_, ms)) = sh.cfg.page_latency.iter().find(|(k, _)| this_page(k)) {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
    // Counted as it arrives: a client that leaves before the (slow)
    // answer still sent it.
    if route == Route::Login && parts.method == Method::POST && !sh.credentials_match(&params) {
        sh.counters.lock().unwrap().refused_logins += 1;
        tokio::time::sleep(sh.cfg.slow_refusal).await;
    }
    if sh.cfg.failing_pages.iter().any(|k| this_page(k)) {
        sh.counters.lock().unwrap().injected_failures += 1;
        return html(
            v,
            StatusCode::SERVICE_UNAVAILABLE,
            pages::message(v, "Erreur", "Le service est momentanément indisponible."),
        );
    }
    if sh.roll(sh.cfg.fail_rate) {
        sh.counters.lock().unwrap().injected_failures += 1;
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][sh.state.lock().unwrap().rng.random_range(0..3)];
        return html(
            v,
            status,
            pages::message(v, "Erreur", "Le service est momentanément indisponible."),
        );
    }

    // A CDN's script: the same for anyone, session or not.
    if route == Route::Kit {
        return kit_script();
    }
    let names = v.names();
    let sid = cookie(&parts.headers, names.cookie);
    let session_ok = match &sid {
        Some(id) => {
            let mut st = sh.state.lock().unwrap();
            let expired = match st.sessions.get_mut(id) {
                Some(s) if sh.cfg.expire_after.is_some_and(|n| s.requests >= n) => true,
                Some(s) => {
                    s.requests += 1;
                    false
                }
                None => {
                    drop(st);
                    return match route {
                        Route::Root | Route::Login => {
                            dispatch_anonymous(&sh, route, &parts.method, &params, None)
                        }
                        _ => sh.logged_out(),
                    };
                }
            };
            if expired {
                st.sessions.remove(id);
                drop(st);
                sh.counters.lock().unwrap().expired_sessions += 1;
            }
            !expired
        }
        None => false,
    };
    if !session_ok {
        return match route {
            Route::Root | Route::Login => {
                dispatch_anonymous(&sh, route, &parts.method, &params, None)
            }
            _ => sh.logged_out(),
        };
    }
    let sid = sid.unwrap();
    match route {
        Route::Kit => kit_script(),
        Route::Root => redirect(StatusCode::FOUND, &v.url(&Route::Home)),
        Route::Login => dispatch_anonymous(&sh, route, &parts.method, &params, Some(&sid)),
        Route::Home => {
            let mut page = pages::home(sh.style());
            if sh.cfg.hostile.home_page_mib > 0 {
                page.push_str("<!--");
                page.push_str(&" ".repeat(sh.cfg.hostile.home_page_mib << 20));
                page.push_str("-->");
            }
            html(v, StatusCode::OK, page)
        }
        Route::MyServices => html(v, StatusCode::OK, pages::my_services(sh.style())),
        Route::Search => html(
            v,
            StatusCode::OK,
            pages::search(sh.style(), &sh.new_token(Some(&sid), None)),
        ),
        Route::Results => {
            // The form's token is checked; the pagination links carry none.
            if params.contains_key(names.token) && !sh.check_token(&params, Some(&sid), None) {
                return sh.refused();
            }
            let values = search_values(v, &params);
            let page: usize = params
                .get(names.page)
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let found = search_services(&sh.ds, &values);
            let (shown, more) = page_of(&found, page, sh.cfg.page_size);
            let next = more.then(|| {
                let mut url = v.url(&Route::Results);
                for (i, value) in values.iter().enumerate() {
                    if !value.is_empty() {
                        url = pages::with_param(&url, names.search[i], value);
                    }
                }
                let url = pages::with_param(&url, names.page, &(page + 1).to_string());
                sh.link_token(&sid, url)
            });
            let token = sh.new_token(Some(&sid), None);
            html(
                v,
                StatusCode::OK,
                pages::results(sh.style(), &token, &values, &sh.ds, &shown, next),
            )
        }
        Route::Service(s) => match sh.ds.service_index(&s) {
            Some(i) => html(v, StatusCode::OK, pages::service(sh.style(), &sh.ds, i)),
            None => sh.not_found(),
        },
        Route::Users(s) => {
            let Some(i) = sh.ds.service_index(&s) else {
                return sh.not_found();
            };
            let all = sh.ds.licences_of(i);
            let page: usize = params
                .get(names.page)
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            let (shown, more) = page_of(all, page, sh.cfg.page_size);
            let next = more.then(|| {
                let url = pages::with_param(
                    &v.url(&Route::Users(s.clone())),
                    names.page,
                    &(page + 1).to_string(),
                );
                sh.link_token(&sid, url)
            });
            let notice = match v {
                Variant::Modern => sh.take_flash(&sid, |l| sh.ds.licences[l].service == i),
                Variant::Classic => None,
            };
            html(
                v,
                StatusCode::OK,
                pages::users(
                    sh.style(),
                    &sh.ds,
                    i,
                    &shown
                        .iter()
                        .map(|&l| (l, sh.state_text(l).to_string()))
                        .collect::<Vec<_>>(),
                    next,
                    notice,
                ),
            )
        }
        Route::Detail(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            let notice = match v {
                Variant::Classic => sh.take_flash(&sid, |f| f == i),
                Variant::Modern => None,
            };
            let token = sh.new_token(Some(&sid), None);
            // The confirmation as a dialog of this page: its form holds
            // the token that confirms this licence.
            let dialog = if sh.has(Shape::Dialog) {
                Some(pages::Dialog::InPage(pages::confirmation(
                    sh.style(),
                    &sh.ds,
                    i,
                    &sh.new_token(Some(&sid), Some(i)),
                )))
            } else if sh.has(Shape::Scripted) {
                Some(pages::Dialog::Scripted {
                    info: v.url(&Route::ApiInfo(l.clone())),
                    confirm: v.url(&Route::ApiConfirm(l.clone())),
                    page_token: sh.new_token(Some(&sid), None),
                    kit: sh.cfg.scripts_from.as_ref().map(|origin| {
                        format!("{}{}", origin.trim_end_matches('/'), v.url(&Route::Kit))
                    }),
                    ask: pages::Ask {
                        on_reset: sh.has(Shape::AskOnReset),
                        on_confirm: sh.has(Shape::AskOnConfirm),
                    },
                })
            } else if sh.has(Shape::RemoteDialog) {
                let mut url = v.url(&Route::Reset(l.clone()));
                if v == Variant::Modern {
                    url = pages::with_param(&url, v.names().licence, &l);
                }
                Some(pages::Dialog::Remote(url))
            } else {
                None
            };
            html(
                v,
                StatusCode::OK,
                pages::detail(
                    sh.style(),
                    &sh.ds,
                    i,
                    sh.state_text(i),
                    &token,
                    notice,
                    dialog,
                ),
            )
        }
        Route::Reset(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            if sh.has(Shape::RemoteDialog) && parts.method == Method::GET {
                // The dialog's content alone, as a modal loads it: without a
                // <meta>, so its charset goes in the header.
                let token = sh.new_token(Some(&sid), Some(i));
                let mut r = html(
                    v,
                    StatusCode::OK,
                    pages::confirmation(sh.style(), &sh.ds, i, &token),
                );
                if v == Variant::Modern {
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=windows-1252"),
                    );
                }
                return r;
            }
            if parts.method != Method::POST || !sh.check_token(&params, Some(&sid), None) {
                return sh.refused();
            }
            let token = sh.new_token(Some(&sid), Some(i));
            html(
                v,
                StatusCode::OK,
                pages::confirm(sh.style(), &sh.ds, i, &token),
            )
        }
        Route::ApiInfo(l) => {
            let Some(i) = sh.ds.licence_index(&l).filter(|_| sh.has(Shape::Scripted)) else {
                return sh.not_found();
            };
            let token = sh.new_token(Some(&sid), Some(i));
            json_answer(serde_json::json!({
                "sda": sh.ds.licences[i].sda,
                "token": token,
            }))
        }
        Route::ApiConfirm(l) => {
            let Some(i) = sh.ds.licence_index(&l).filter(|_| sh.has(Shape::Scripted)) else {
                return sh.not_found();
            };
            // The page's token in the header, the confirmation's in the body.
            let header_token = parts
                .headers
                .get("x-csrf-token")
                .and_then(|t| t.to_str().ok())
                .unwrap_or("");
            let page = HashMap::from([(v.names().token.to_string(), header_token.to_string())]);
            let body = HashMap::from([(
                v.names().token.to_string(),
                params.get("token").cloned().unwrap_or_default(),
            )]);
            if parts.method != Method::POST
                || !sh.check_token(&page, Some(&sid), None)
                || !sh.check_token(&body, Some(&sid), Some(i))
            {
                return sh.refused();
            }
            if let Err(e) = sh.commit_reset(&sid, i) {
                return sh.cannot_commit(e);
            }
            sh.maybe_drop(&parts).await;
            // The script writes the password itself: no notification waits.
            let password = {
                let mut st = sh.state.lock().unwrap();
                st.sessions
                    .get_mut(&sid)
                    .and_then(|s| s.flash.take())
                    .map(|(_, pw)| pw)
                    .unwrap_or_default()
            };
            json_answer(serde_json::json!({ "password": password }))
        }
        Route::Confirm(l) => {
            let Some(i) = sh.ds.licence_index(&l) else {
                return sh.not_found();
            };
            if parts.method != Method::POST || !sh.check_token(&params, Some(&sid), Some(i)) {
                return sh.refused();
            }
            if let Err(e) = sh.commit_reset(&sid, i) {
                return sh.cannot_commit(e);
            }
            sh.maybe_drop(&parts).await;
            let to = match v {
                Variant::Classic => v.url(&Route::Detail(l)),
                Variant::Modern => v.url(&Route::Users(
                    sh.ds.services[sh.ds.licences[i].service].reference.clone(),
                )),
            };
            match &sh.cfg.hostile.confirm_redirect {
                Some(elsewhere) => redirect(StatusCode::SEE_OTHER, elsewhere),
                None => redirect(StatusCode::SEE_OTHER, &to),
            }
        }
    }
}

/// The login page and the login form, reachable without a session.
impl Shared {
    /// Whether a login form sent holds the account's login, password and profile.
    fn credentials_match(&self, params: &HashMap<String, String>) -> bool {
        let names = self.cfg.variant.names();
        let wanted_profile = match self.cfg.profile {
            LoginProfile::Reseller => names.profile_values[0],
            LoginProfile::Operator => names.profile_values[1],
        };
        params.get(names.login) == Some(&self.cfg.login)
            && params.get(names.password) == Some(&self.cfg.password)
            && params.get(names.profile).map(String::as_str) == Some(wanted_profile)
    }
}

pub(super) fn dispatch_anonymous(
    sh: &Shared,
    route: Route,
    method: &Method,
    params: &HashMap<String, String>,
    old_session: Option<&str>,
) -> Response<Body> {
    let v = sh.cfg.variant;
    if route == Route::Root || *method != Method::POST {
        return match route {
            Route::Root => redirect(StatusCode::FOUND, &v.url(&Route::Login)),
            _ => sh.login_page(StatusCode::OK, None),
        };
    }
    if !sh.check_token(params, None, None) {
        return sh.refused();
    }
    if !sh.credentials_match(params) {
        return sh.login_page(
            StatusCode::OK,
            Some("Identifiant, mot de passe ou profil incorrect."),
        );
    }
    sh.counters.lock().unwrap().logins += 1;
    let sid = {
        let mut st = sh.state.lock().unwrap();
        if let Some(old) = old_session {
            st.sessions.remove(old);
        }
        let sid = random_string(&mut st.rng, 32);
        sh.hand_out("session", &sid);
        st.sessions.insert(
            sid.clone(),
            Session {
                requests: 0,
                flash: None,
                again: None,
            },
        );
        sid
    };
    let mut r = redirect(StatusCode::SEE_OTHER, &v.url(&Route::Home));
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}={sid}; Path=/; HttpOnly; SameSite=Lax",
            v.names().cookie
        ))
        .unwrap(),
    );
    r
}
