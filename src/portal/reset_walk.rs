//! One licence's reset in a session: Détail, Réinitialiser, Confirmer, the
//! new password read once, each press through the one gate.

use super::*;

impl Browser {
    /// Resets the SIP password of one licence: Détail, Réinitialiser, Confirmer.
    /// `Confirmer` is sent only when the pages show this licence and `sda`,
    /// and only with the `permit` of a run whose journal is open.
    /// `already`: the account codes of phones an earlier run reset that show
    /// the same licence and number; if the detail page shows one of them,
    /// nothing is reset (`AlreadyReset`).
    pub async fn reset(
        &mut self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        self.walking = Some(licence.licence.clone());
        let result = self.reset_walk(licence, sda, already, permit).await;
        self.walking = None;
        result
    }

    pub(super) async fn reset_walk(
        &mut self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        for attempt in 0.. {
            self.session().await.map_err(ResetError::NotDone)?;
            match self.reset_once(licence, sda, already, permit).await {
                Err(ResetError::NotDone(PortalError::SessionEnded)) => {
                    self.session_ended(attempt).map_err(ResetError::NotDone)?
                }
                // Before any Confirmer: the step needs a script.
                Err(ResetError::NotDone(e))
                    if self.move_to_the_browser(&e, Handover::CarriedOn) => {}
                Err(ResetError::NotDone(PortalError::EarlierPasswordShown)) => {
                    let (_, accountcode) = self
                        .unsettled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("set with the password");
                    let password = self
                        .recovered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("set with the error");
                    return Ok(NewPassword {
                        password,
                        accountcode,
                        earlier: true,
                    });
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// Détail then Réinitialiser: checks the pages show this licence and SDA,
    /// and returns the account code and the `Confirmer` press. Nothing has
    /// changed on the portal yet: every press on the way is harmless.
    pub(super) async fn prepare(
        &self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
    ) -> Result<(String, Press), ResetError> {
        let l = &self.shared.labels;
        self.transport.hold(Some(&licence.licence));
        let reset = self
            .page(
                Purpose::Reset,
                Req::Get(licence.detail.clone()),
                Retry::Yes,
                "detail",
                |doc, url| {
                    let shown = html::field_value(doc, &l.field_licence)
                        .ok_or_else(|| html::missing(doc, want!(l, field_licence, LabelValue)))?;
                    if shown.split(' ').next() != Some(licence.licence.as_str()) {
                        return Err(
                            format!("shows licence '{shown}', not {}", licence.licence).into()
                        );
                    }
                    if let Some(shown_sda) = html::field_value(doc, &l.field_sda)
                        && !phone::same_number(&shown_sda, sda)
                    {
                        return Err(format!(
                            "shows SDA '{shown_sda}' for {}, expected '{sda}'",
                            licence.licence
                        )
                        .into());
                    }
                    let accountcode =
                        html::field_value(doc, &l.field_accountcode).unwrap_or_default();
                    Ok((
                        accountcode,
                        to_confirmation(doc, url, l, self.transport.runs_scripts()),
                        url.clone(),
                    ))
                },
            )
            .await
            .map_err(ResetError::NotDone)?;
        let (accountcode, to_confirm, detail_url) = reset;
        let to_confirm = to_confirm.map_err(ResetError::NotDone)?;
        if !already.is_empty() {
            if accountcode.is_empty() {
                return Err(ResetError::NotDone(PortalError::Contract {
                    page: "detail",
                    what: format!(
                        "no '{}': cannot tell this phone from another one that shows {} and this number, which an earlier run reset",
                        l.field_accountcode, licence.licence
                    ),
                }));
            }
            if already.contains(&accountcode) {
                return Err(ResetError::AlreadyReset { accountcode });
            }
        }
        let read_confirmation = |doc: &Html, url: &Url| -> Result<_, Problem> {
            let after = html::text_after(doc, &l.associated_number)
                .ok_or_else(|| html::missing(doc, want!(l, associated_number, Text)))?;
            let shown = phone::leading_number(&after);
            if !phone::same_number(&shown, sda) {
                return Err(format!(
                    "associated number '{shown}' is not '{sda}' of {}",
                    licence.licence
                )
                .into());
            }
            let want = want!(l, confirm_button, Button);
            Ok(match html::need_control(doc, url, want)? {
                html::Opens::Form(form) => Press::of(Some(doc), &form, want, Step::Confirmation, l),
                html::Opens::Script { path, .. } if self.transport.runs_scripts() => {
                    Ok(Press::click(doc, path, want, Step::Confirmation, l))
                }
                html::Opens::Script { label, .. } => Err(PortalError::NeedsScript {
                    page: "confirmation",
                    control: label,
                }),
                // A confirmation that opens yet another dialog: not a
                // confirmation the walk knows.
                _ => Err(problem("confirmation", html::missing(doc, want).into())),
            })
        };
        let confirm = match to_confirm {
            ToConfirmation::Request(req) => {
                self.page(
                    Purpose::Reset,
                    req,
                    Retry::Yes,
                    "confirmation",
                    read_confirmation,
                )
                .await
            }
            // A dialog of the detail page: read there, nothing fetched.
            ToConfirmation::Shown(dialog) => {
                read_confirmation(&Html::parse_document(&dialog), &detail_url)
                    .map_err(|p| problem("confirmation", p))
            }
            // A script of the page shows it: pressed in the browser.
            ToConfirmation::Click(path) => {
                let shown = confirmation_shown(l);
                match self
                    .transport
                    .click(Purpose::Reset, &path, false, &shown)
                    .await
                {
                    Ok(settled) => self.read(&settled.page, "confirmation", read_confirmation),
                    Err(e) => Err(PortalError::Transport(e)),
                }
            }
        }
        .and_then(|press| press)
        .map_err(ResetError::NotDone)?;
        Ok((accountcode, confirm))
    }

    pub(super) async fn reset_once(
        &self,
        licence: &LicenceRow,
        sda: &str,
        already: &[String],
        permit: &CommitPermit,
    ) -> Result<NewPassword, ResetError> {
        let l = &self.shared.labels;
        let (accountcode, confirm) = self.prepare(licence, sda, already).await?;
        // Held here while the canary runs; never pressed if it failed.
        let action = confirm
            .commit(permit, &self.shared.interruptions)
            .await
            .map_err(|e| ResetError::NotDone(e.into()))?;
        // From here on the password may have changed: no failure is "not
        // done", unless nothing was sent or the portal did not take it
        // (the gate's rule).
        let before = self.transport.sent();
        // A form sent by the browser, or a control pressed there.
        let pressed_in_the_browser = self.transport.runs_scripts();
        let class = |answer: Answer| {
            if pressed_in_the_browser {
                gate::in_the_browser(answer)
            } else {
                answer
            }
        };
        self.confirmed_in
            .store(self.login_number, Ordering::Relaxed);
        let unknown = |answer: Answer, reason: String| {
            self.unread_confirmer.store(true, Ordering::Relaxed);
            match answer {
                Answer::NotTaken => unreachable!("handled before"),
                Answer::NotReadable => {
                    // A later page of this session may still show its password.
                    *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((licence.licence.clone(), accountcode.clone()));
                    ResetError::Unknown {
                        reason,
                        next: AfterUnknown::ResetAgain,
                    }
                }
                Answer::ReadWithoutPassword => ResetError::Unknown {
                    reason,
                    next: AfterUnknown::GiveUp,
                },
                Answer::LeadsElsewhere => ResetError::Unknown {
                    reason,
                    next: AfterUnknown::StopRun,
                },
            }
        };
        let sent = match action {
            Action::Send(req) => self
                .transport
                .fetch(Purpose::Reset, req, Retry::FirstHopOnce)
                .await
                .map(|fetched| (fetched, Vec::new())),
            // Only a request sent (and answered) tells what it did.
            Action::Click(path) => self
                .transport
                .click(Purpose::Reset, &path, true, &|_| false)
                .await
                .map(|settled| (settled.page, settled.answers)),
        };
        let (fetched, script_answers) = match sent {
            // A script control pressed, and no request left the browser:
            // nothing was confirmed (interrupted while it waited its turn,
            // or a page that did nothing).
            Ok(_) if self.transport.sent() == before => {
                return Err(ResetError::NotDone(
                    if self.shared.interruptions.reads.is_cancelled() {
                        PortalError::Transport(TransportError::Interrupted)
                    } else {
                        PortalError::Contract {
                            page: "confirmation",
                            what: "pressing Confirmer sent nothing to the portal".into(),
                        }
                    },
                ));
            }
            Ok(answered) => answered,
            Err(e) if self.transport.sent() == before => {
                // Nothing went out (interrupted while waiting its turn).
                return Err(ResetError::NotDone(PortalError::Transport(e)));
            }
            // Refused before any Confirmer of this press went (else its
            // page is read): nothing was reset, and the run stops.
            Err(e @ TransportError::Tampered(_)) => {
                return Err(ResetError::NotDone(PortalError::Transport(e)));
            }
            Err(TransportError::Interrupted) => {
                return Err(ResetError::Unknown {
                    reason: "interrupted after Confirmer was sent".into(),
                    next: AfterUnknown::Abandoned,
                });
            }
            Err(e) => {
                return Err(match class(gate::answer_of_error(&e)) {
                    Answer::NotTaken => ResetError::NotDone(match e {
                        TransportError::Forbidden => PortalError::SessionEnded,
                        e => PortalError::Transport(e),
                    }),
                    answer => unknown(answer, format!("Confirmer answered: {e}")),
                });
            }
        };
        let doc = Html::parse_document(&fetched.body);
        html::learn_tokens(&doc);
        // Every password the page shows, wiped when dropped like the body;
        // this reset's is the first this run has not read already (a
        // notification of an earlier reset may be shown again beside it).
        let shown = new_passwords_on(&doc, l);
        let found = shown
            .iter()
            .map(|p| p.as_str())
            .find(|p| !crate::scrub::is_known_password(p));
        if let Some(password) = found {
            // Known to the scrubber before anything can write the page.
            crate::scrub::remember(password, Secret::NewPassword);
        }
        self.capture(&fetched, "result", found.as_slice(), true);
        // A result page that names a licence must name this one: a password
        // shown beside another licence is not this licence's.
        if let Some(shown) = html::field_value(&doc, &l.field_licence)
            && shown.split(' ').next() != Some(licence.licence.as_str())
        {
            return Err(unknown(
                Answer::ReadWithoutPassword,
                format!(
                    "the result page shows licence '{shown}', not {}",
                    licence.licence
                ),
            ));
        }
        let login_address = self.shared.login_address();
        let of_scripts = gate::answer_of_scripts(&script_answers)
            // The page the press left answered 429 or 5xx (in the browser,
            // a document its script loaded): no result page, never a
            // labels problem (helper-19: 'no text … on Trop de requêtes').
            .or_else(|| gate::answer_of_document(fetched.status));
        let seen = of_scripts
            .unwrap_or_else(|| gate::answer_of_page(&doc, l, &fetched, login_address.as_ref()));
        let answer = class(seen);
        match (found, answer) {
            (Some(password), _) => {
                *self.unsettled.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(NewPassword {
                    password: SecretString::from(password.to_string()),
                    accountcode,
                    earlier: false,
                })
            }
            // The session had ended: the portal did not take the press.
            (None, Answer::NotTaken) => Err(ResetError::NotDone(PortalError::SessionEnded)),
            (None, Answer::NotReadable) if fetched.status >= 400 => Err(unknown(
                Answer::NotReadable,
                format!(
                    "the page after Confirmer was answered {} in the browser: whether the portal took it is unknown",
                    fetched.status
                ),
            )),
            (None, Answer::NotReadable) if seen == Answer::NotTaken => Err(unknown(
                Answer::NotReadable,
                "Confirmer was answered as not taken, in the browser, which may have sent it twice: whether the portal took it is unknown".into(),
            )),
            (None, Answer::NotReadable) if of_scripts.is_some() => Err(unknown(
                Answer::NotReadable,
                "the request Confirmer sent got no usable answer (cut, or 5xx)".into(),
            )),
            (None, Answer::NotReadable) => Err(unknown(
                Answer::NotReadable,
                "the session ended after Confirmer, before its result page".into(),
            )),
            // Only passwords read for other licences: the label may name
            // something else than this reset's password.
            (None, answer) if !shown.is_empty() => Err(unknown(
                answer,
                "the result page shows no password this run has not read already".into(),
            )),
            (None, answer) => Err(unknown(
                answer,
                html::missing(&doc, want!(l, new_password, Text))
                    .withheld()
                    .to_string(),
            )),
        }
    }
}

/// What pressing the control that opens the confirmation shows, once its
/// script has filled it: the associated number's label.
pub(super) fn confirmation_shown(
    l: &super::labels::Labels,
) -> impl Fn(&super::chromium::Settled) -> bool + Send + Sync + '_ {
    move |s| html::text_after(&Html::parse_document(&s.page.body), &l.associated_number).is_some()
}
