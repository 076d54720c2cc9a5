//! The end of a run, decided once: where the passwords are, the
//! journal's fate, the parts, the report, and the outcome that says so.

use super::*;

impl Run<'_> {
    pub(super) fn after_resets(
        &self,
        mut report: Vec<ReportRow>,
        sink: Sink<'_>,
        resets: Resets,
        resolution_failed: Option<StopReason>,
        resumed: &mut Resumed,
    ) -> Outcome {
        report.extend(resets.rows);
        let phase = if resets.began {
            Phase::Resets
        } else {
            Phase::Resolution
        };
        let stopped = resets
            .stopped
            .or(resolution_failed)
            .or_else(|| self.stopped_by_signal(phase))
            // Rows left untried without a reason: a signal.
            .or_else(|| {
                report
                    .iter()
                    .any(|r| r.status == Status::Skipped)
                    .then_some(StopReason::Interrupted(phase))
            });
        // A signal that came while the last Confirmer was in flight, once
        // every row is done, stopped nothing: the run ends as finished (its
        // result written, the journal gone), not as one to resume.
        let nothing_left = phase == Phase::Resets
            && !report.is_empty()
            && report
                .iter()
                .all(|r| matches!(r.status, Status::Reset | Status::Duplicate));
        let stopped =
            stopped.filter(|why| !(nothing_left && matches!(why, StopReason::Interrupted(_))));
        let done = ResetsDone {
            began: resets.began,
            confirmations: resets.confirmations,
            lost: resets.lost,
        };
        self.finish(report, Some(sink), stopped, resumed, done)
    }

    /// Ends the run: the result file or the part file, the journal's fate,
    /// the report.
    pub(super) fn finish(
        &self,
        mut rows: Vec<ReportRow>,
        sink: Option<Sink<'_>>,
        mut stopped: Option<StopReason>,
        resumed: &Resumed,
        done: ResetsDone,
    ) -> Outcome {
        let mut passwords = Passwords {
            result: Vec::new(),
            part: Vec::new(),
            journal: JournalFate::NotCreated,
            lost: done.lost,
            earlier: resumed.earlier().map(|e| Earlier {
                per_client: outputs::per_client(&self.settings.output),
                ..e
            }),
            stranded: None,
        };
        let (mut journal, outputs, stranded) = match sink {
            Some(Sink {
                journal,
                outputs,
                stranded,
                ..
            }) => (Some(journal), Some(outputs), stranded),
            None => (
                self.journal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take(),
                None,
                Stranded::default(),
            ),
        };
        if let Some(journal) = journal.as_mut().filter(|_| outputs.is_none()) {
            // Stopped before the resets: a new password a page showed goes
            // to the journal, which then stays (the resets keep theirs).
            for stray in self.portal.take_stray() {
                let record = vault::ResetRecord {
                    client_ref: String::new(),
                    service_ref: String::new(),
                    licence: String::new(),
                    licence_type: String::new(),
                    sda: String::new(),
                    name: format!("(seen on the {} page: its phone is not known)", stray.page),
                    accountcode: String::new(),
                    password: stray.password,
                    reset_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                if journal.append(&self.settings.recipients, &record).is_err() {
                    passwords.lost += 1;
                }
            }
        }
        // The files the earlier runs' passwords went into, when merged.
        let mut merged_into: Option<Vec<HeldIn>> = None;
        // Resumed without an identity, the journal gone: the earlier runs'
        // passwords are in the parts they wrote, and their rows say so.
        let mut left_in_parts: Option<Vec<EarlierPart>> = None;
        if let Some(mut journal) = journal {
            let journal_path = journal.path().to_path_buf();
            let this_run = journal.appended();
            let mut kept_because = None;
            let mut written = 0;
            let mut complete = false;
            let mut merged = 0;
            if let Some(mut outputs) = outputs {
                if stopped.is_none()
                    && let Some(rows) = resumed.earlier_rows()
                {
                    // The rotation finishes as one: the earlier runs'
                    // passwords go into this result beside this run's.
                    for row in rows {
                        match outputs.add_earlier(row) {
                            Ok(()) => merged += 1,
                            Err(e) => {
                                stopped = Some(StopReason::WriteFailed(e.to_string()));
                                break;
                            }
                        }
                    }
                }
                written = outputs.rows();
                // Nothing reset and something failed (every licence failed
                // before its Confirmer, without a stop: --canary 0): no
                // empty result, which would only stand in the way of the
                // same command run again, as its advice says.
                let nothing_to_hand = written == 0
                    && rows.iter().any(|r| r.status == Status::Failed)
                    && !rows.iter().any(|r| r.status == Status::Reset);
                if stopped.is_none() && nothing_to_hand {
                    // Dropped unfinished: its temporary goes with it.
                    drop(outputs);
                    complete = true;
                } else if stopped.is_none() {
                    let (held, failed) = outputs.finish();
                    passwords.result = held;
                    match failed {
                        // The passwords of the failed file are in the journal
                        // (and `stranded`) only.
                        Some(e) => stopped = Some(StopReason::WriteFailed(e.to_string())),
                        None => complete = true,
                    }
                } else {
                    let (held, failures) = outputs.finish_parts();
                    for part in &held {
                        // For a later summary; the part file is complete either way.
                        let _ = journal.note_part(&part.path, part.passwords);
                    }
                    for e in failures {
                        tracing::error!("cannot write a part file: {e}");
                    }
                    passwords.part = held;
                }
            }
            drop(journal);
            // Written to no file: what the caller must show, encrypted.
            let in_a_file = !passwords.result.is_empty() || !passwords.part.is_empty();
            if (!in_a_file && stranded.count > 0) || stranded.in_no_file > 0 {
                passwords.stranded = Some(stranded);
            }
            // The journal goes only when every password it holds is in the
            // complete result file, checked on disk.
            let on_disk = vault::read_journal(&journal_path)
                .map(|c| c.entries.len())
                .map_err(|e| e.to_string());
            let in_results: usize = passwords.result.iter().map(|h| h.passwords).sum();
            let removable = match &on_disk {
                Ok(0) if !resumed.is_resuming() => true,
                // Resumed with the journal read: every entry is in the result.
                Ok(n)
                    if complete
                        && merged > 0
                        && *n == this_run + merged
                        && in_results == *n
                        && written == in_results =>
                {
                    true
                }
                Ok(n)
                    if complete
                        && *n == this_run
                        && this_run == in_results
                        && written == in_results =>
                {
                    true
                }
                // Resumed without an identity: the journal may still go
                // when every earlier password is in a part file the
                // journal records, and this run's in the result.
                Ok(n)
                    if complete
                        && merged == 0
                        && resumed.earlier().is_some_and(|e| {
                            *n == this_run + e.in_journal
                                && parts_hold_earlier(&e, &self.settings.output)
                        })
                        && in_results == this_run
                        && written == in_results =>
                {
                    true
                }
                Ok(_) if complete && resumed.is_resuming() => {
                    kept_because = Some(KeptBecause::EarlierRuns);
                    false
                }
                Ok(n) if complete => {
                    kept_because = Some(KeptBecause::Mismatch(format!(
                        "it holds {n} entries, the result files {in_results}"
                    )));
                    false
                }
                Err(e) => {
                    kept_because = Some(KeptBecause::Mismatch(e.clone()));
                    false
                }
                Ok(_) => false,
            };
            let entries = *on_disk.as_ref().unwrap_or(&this_run);
            passwords.journal = if removable {
                match std::fs::remove_file(&journal_path) {
                    Ok(()) if merged > 0 => {
                        // What the earlier runs left is in the result now.
                        passwords.earlier = None;
                        remove_parts(resumed, &self.settings.output);
                        // Their rows name where the passwords are now.
                        merged_into = Some(passwords.result.clone());
                        JournalFate::Removed
                    }
                    Ok(()) if resumed.earlier().is_some_and(|e| e.in_journal > 0) => {
                        left_in_parts = resumed.earlier().map(|e| e.parts);
                        JournalFate::Removed
                    }
                    // Empty: for whoever reads the summary, there was none.
                    Ok(()) if entries == 0 => JournalFate::NotCreated,
                    Ok(()) => JournalFate::Removed,
                    Err(e) => JournalFate::Kept {
                        path: journal_path,
                        entries,
                        this_run,
                        because: KeptBecause::RemovalFailed(e.to_string()),
                    },
                }
            } else {
                if kept_because == Some(KeptBecause::EarlierRuns) {
                    // The rotation is finished: a later run starts afresh
                    // beside this journal, kept for what only it holds.
                    if let Err(e) =
                        Journal::reopen(&journal_path).and_then(|mut j| j.note_finished())
                    {
                        tracing::warn!("cannot mark {} finished: {e}", journal_path.display());
                    }
                }
                JournalFate::Kept {
                    path: journal_path,
                    entries,
                    this_run,
                    because: kept_because.unwrap_or(KeptBecause::Stopped),
                }
            };
        }
        if let Some(results) = &merged_into {
            let template = &self.settings.output;
            for row in rows
                .iter_mut()
                .filter(|r| r.origin == report::Origin::EarlierRun)
            {
                // Without {client}, the one output.
                let file = outputs::output_for(template, &row.client_ref);
                if let Some(held) = results.iter().find(|h| h.path == file).or(results.first()) {
                    row.detail =
                        resume::earlier_detail(&held.path.display().to_string(), &row.accountcode);
                }
            }
        }
        if let Some(parts) = &left_in_parts {
            let template = &self.settings.output;
            for row in rows
                .iter_mut()
                .filter(|r| r.origin == report::Origin::EarlierRun)
            {
                let file = outputs::output_for(template, &row.client_ref);
                let names: Vec<String> = parts
                    .iter()
                    .filter(|p| outputs::is_part_of(&file, &p.held.path))
                    .map(|p| p.held.path.display().to_string())
                    .collect();
                if !names.is_empty() {
                    row.detail = resume::earlier_detail(&names.join(" or "), &row.accountcode);
                }
            }
        }
        // In input order; the licences of one line in the order they were done.
        rows.sort_by_key(|r| r.line);
        let mut problems = Vec::new();
        if let JournalFate::Kept {
            path,
            because: KeptBecause::RemovalFailed(why),
            ..
        } = &passwords.journal
        {
            problems.push(LateProblem::JournalNotRemoved {
                path: path.clone(),
                why: why.clone(),
            });
        }
        let mut report = None;
        if let Some(file) = &self.settings.report {
            let mut all = rows.clone();
            all.extend(self.carried.iter().cloned());
            let engine = self.portal.stats().engine();
            match report::write(&file.path, &all, engine, file.may_replace(), file.dialect) {
                Ok(path) => report = Some(path),
                Err(e) => problems.push(LateProblem::Report {
                    path: file.path.clone(),
                    why: e.to_string(),
                }),
            }
        }
        let replaced_reports = self.replace_earlier_reports(&passwords.journal, resumed, &report);
        Outcome {
            rows,
            stopped,
            resets_began: done.began,
            confirmations: done.confirmations,
            passwords,
            report,
            problems,
            replaced_reports,
            on_rerun: if resumed.earlier_rows().is_some() {
                OnRerun::ResumesWithIdentity
            } else {
                self.settings.on_rerun
            },
            requests: Requests::of(self.portal.stats()),
            elapsed: self.started.elapsed(),
            left_out: LeftOutCounts::default(),
        }
    }

    /// One rotation, one report. A run that stops has its report noted in
    /// the journal; the run that finishes the rotation writes the report
    /// of all of it, which takes the place of the stopped runs' (a dated
    /// `--report` names each run's report differently). A noted report is
    /// removed only if it is still the file written, byte for byte.
    fn replace_earlier_reports(
        &self,
        journal: &JournalFate,
        resumed: &Resumed,
        written: &Option<std::path::PathBuf>,
    ) -> Vec<std::path::PathBuf> {
        let Some(written) = written else {
            return Vec::new();
        };
        match journal {
            JournalFate::Kept {
                path,
                because:
                    KeptBecause::Stopped | KeptBecause::Mismatch(_) | KeptBecause::RemovalFailed(_),
                ..
            } => {
                if let Err(e) = Journal::reopen(path).and_then(|mut j| j.note_report(written)) {
                    tracing::warn!("cannot note the report in {}: {e}", path.display());
                }
                Vec::new()
            }
            _ => {
                let same = |a: &std::path::Path, b: &std::path::Path| {
                    std::path::absolute(a).ok() == std::path::absolute(b).ok()
                };
                let mut removed = Vec::new();
                for note in resumed.earlier_reports() {
                    // Not this run's, nor its input (a report retried),
                    // and still the report written, byte for byte.
                    if same(&note.file, written)
                        || same(&note.file, &self.settings.input)
                        || removed.contains(&note.file)
                        || !note.is_intact()
                        || !report::is_report(&note.file)
                    {
                        continue;
                    }
                    match std::fs::remove_file(&note.file) {
                        Ok(()) => removed.push(note.file.clone()),
                        Err(e) => tracing::warn!(
                            "cannot remove the stopped run's report {}: {e}",
                            note.file.display()
                        ),
                    }
                }
                removed
            }
        }
    }
}
