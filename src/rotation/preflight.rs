//! Before any request: the files checked (none in the way, none written
//! twice, none a link), the lock taken, the input read, a journal to
//! resume read back.

use super::*;

/// Of `targets`, the phones in use now and those nobody can tell.
pub(super) fn in_use(targets: &[Target], labels: &crate::portal::labels::Labels) -> (usize, usize) {
    use crate::portal::Registration;
    targets.iter().fold((0, 0), |(used, unknown), t| {
        match t.licence.registration(labels) {
            Registration::Connected => (used + 1, unknown),
            Registration::Disconnected => (used, unknown),
            Registration::Other(_) | Registration::NotShown => (used, unknown + 1),
        }
    })
}

/// The checks made before anything else; what they found.
pub(super) struct Prepared {
    pub(super) rows: Vec<InputRow>,
    pub(super) left_out: Vec<LeftOut>,
    pub(super) from_report: bool,
    /// Created, or reopened to resume; locked either way.
    pub(super) journal: Journal,
    pub(super) resumed: Resumed,
    pub(super) _lock: RunLock,
}

/// The journal of a run: one file, even with one result per client.
pub fn journal_of(output: &Path) -> PathBuf {
    vault::journal_path(&outputs::shared_name(output))
}

/// The result files a run of `clients` may write.
pub(super) fn result_files(settings: &Settings, clients: &[String]) -> Vec<PathBuf> {
    if outputs::per_client(&settings.output) {
        clients
            .iter()
            .map(|c| outputs::output_for(&settings.output, c))
            .collect()
    } else {
        vec![settings.output.clone()]
    }
}

/// Refuses a run whose files collide or are in the way, before any request.
pub(super) fn check_files(settings: &Settings, clients: &[String]) -> Result<(), RotationError> {
    let journal = journal_of(&settings.output);
    let path_err = |role: FileRole| move |problem| RotationError::Path { role, problem };
    let results = result_files(settings, clients);
    for result in &results {
        files::check_creatable(result).map_err(path_err(FileRole::Output))?;
    }
    match (std::fs::symlink_metadata(&journal), settings.resume) {
        (Err(_), false) => {
            files::check_creatable(&journal).map_err(path_err(FileRole::Journal))?;
        }
        (Ok(m), _) if m.file_type().is_symlink() => {
            return Err(RotationError::Path {
                role: FileRole::Journal,
                problem: PathProblem::Symlink(journal),
            });
        }
        (Ok(_), false) => {
            // Held by a run still going, or left by one that stopped.
            let in_use = files::open_read(&journal)
                .map(|f| f.try_lock().is_err())
                .unwrap_or(false);
            return Err(if in_use {
                RotationError::Vault(VaultError::JournalInUse { path: journal })
            } else if crate::vault::read_journal(&journal).is_ok_and(|c| c.finished) {
                RotationError::FinishedJournalExists(journal)
            } else {
                RotationError::JournalExists(journal)
            });
        }
        (Err(_), true) => return Err(RotationError::NoJournal(journal)),
        (Ok(_), true) => {}
    }
    if let Some(report) = &settings.report {
        check_report(report)?;
    }
    files::check_folder(files::folder_of(&settings.lock)).map_err(path_err(FileRole::Lock))?;
    if let Some(metrics) = &settings.metrics {
        crate::metrics::check(metrics)?;
    }
    // Distinct files: a report written over the output or the journal would
    // destroy the only copy of the passwords.
    let mut seen: Vec<(FileRole, PathBuf)> = results
        .iter()
        .map(|r| (FileRole::Output, r.clone()))
        .collect();
    seen.extend([
        (FileRole::Journal, journal),
        (FileRole::Lock, settings.lock.clone()),
    ]);
    if !input::is_stdin(&settings.input) {
        seen.push((FileRole::Input, settings.input.clone()));
    }
    if let Some(r) = &settings.report {
        seen.push((FileRole::Report, r.path.clone()));
    }
    if let Some(m) = &settings.metrics {
        seen.push((FileRole::Metrics, m.clone()));
    }
    for (what, path) in &settings.read_files {
        seen.push((FileRole::Read(what.clone()), path.clone()));
    }
    let identities: Vec<(FileRole, PathBuf)> = seen
        .into_iter()
        .map(|(role, p)| (role, files::identity_of(&p)))
        .collect();
    for (i, (a, pa)) in identities.iter().enumerate() {
        for (b, pb) in &identities[i + 1..] {
            if pa == pb {
                return Err(RotationError::SameFile {
                    a: a.clone(),
                    b: b.clone(),
                    path: pa.clone(),
                });
            }
        }
    }
    // Nor a part file the run may write (`OUTPUT.partN`).
    if let Some((_, report)) = identities.iter().find(|(r, _)| *r == FileRole::Report) {
        for (_, output) in identities.iter().filter(|(r, _)| *r == FileRole::Output) {
            let output = output.as_os_str().to_string_lossy().into_owned();
            if report
                .to_string_lossy()
                .starts_with(&format!("{output}.part"))
            {
                return Err(RotationError::PartName(report.clone()));
            }
        }
    }
    Ok(())
}

/// Everything that can be refused before the first request: the files,
/// the lock, the input, the journal to resume.
pub(super) fn prepare(settings: &Settings, holder: &str) -> Result<Prepared, RotationError> {
    let input = input::read(&settings.input)?;
    let mut clients: Vec<String> = input
        .rows
        .iter()
        .map(|r| r.client_ref.clone())
        .chain(input.left_out().iter().map(|r| r.client_ref.clone()))
        .collect();
    clients.sort();
    clients.dedup();
    if outputs::per_client(&settings.output)
        && let Some(known) = &settings.client_recipients
    {
        let missing: Vec<String> = clients
            .iter()
            .filter(|c| known.get(*c).is_none_or(|r| r.is_empty()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(RotationError::ClientWithoutRecipient(missing));
        }
    }
    // The lock first: a second run of the account is told who holds it
    // (its journal would only say it is in use).
    let lock = RunLock::acquire(&settings.lock, &settings.account, holder)?;
    check_files(settings, &clients)?;
    // A killed run's temporaries, of every file this run may write.
    for result in result_files(settings, &clients) {
        vault::clear_stale(&result);
    }
    let journal_path = journal_of(&settings.output);
    // Held from now on: a second run on this output stops here, before asking
    // the portal anything.
    let journal = if settings.resume {
        Journal::reopen(&journal_path)?
    } else {
        Journal::create(
            &journal_path,
            &settings.recipients,
            input.rows.iter().map(input::InputRow::asked).collect(),
        )?
    };
    let resumed = if settings.resume {
        let journal = journal_path.clone();
        let contents = vault::read_journal(&journal)?;
        match &contents.recipients {
            None => return Err(RotationError::JournalWithoutRecipients(journal)),
            Some(recorded) if recorded.as_slice() != settings.recipients.texts() => {
                return Err(RotationError::RecipientsDiffer {
                    path: journal,
                    journal: recorded.clone(),
                    run: settings.recipients.texts().to_vec(),
                });
            }
            Some(_) => {}
        }
        // The rotation the journal began must end with every row it was
        // asked: an input that leaves some out would finish it, exit 0,
        // with those never reset. (A report given as input names other
        // rows, the licences a '*' stood for: not compared.)
        if let Some(asked) = &contents.asked
            && matches!(input.kind, input::InputKind::Licences)
        {
            let missing: Vec<vault::AskedRow> = asked
                .iter()
                .filter(|r| !input.rows.iter().any(|now| now.covers(r)))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(RotationError::InputLeavesOut { journal, missing });
            }
        }
        let earlier_rows = if settings.resume_identities.is_empty() {
            None
        } else {
            let identities = vault::read_identities(&settings.resume_identities)?;
            Some(vault::journal_rows(&journal, &identities)?)
        };
        Resumed::from_journal(journal, contents, earlier_rows)
    } else {
        Resumed::none()
    }
    .with_report(input.left_out());
    let from_report = matches!(input.kind, input::InputKind::Report { .. });
    Ok(Prepared {
        left_out: input.left_out().to_vec(),
        rows: input.rows,
        from_report,
        resumed,
        journal,
        _lock: lock,
    })
}

/// Whether the part files the earlier runs wrote hold every password of
/// theirs the journal holds: each run that stopped wrote one (a run killed
/// wrote none), and each is still there, a regular file of this output.
pub(super) fn parts_hold_earlier(earlier: &Earlier, output: &Path) -> bool {
    earlier.in_journal
        == earlier
            .parts
            .iter()
            .map(|p| p.held.passwords)
            .sum::<usize>()
        && earlier
            .parts
            .iter()
            .all(|part| part.intact && outputs::is_part_of(output, &part.held.path))
}

/// Removes the part files the earlier runs wrote, as their journal names
/// them: once the result holds their passwords. Only regular files: a
/// link put at a part's name is left alone.
pub(super) fn remove_parts(resumed: &Resumed, output: &Path) {
    for EarlierPart { held: part, .. } in resumed.earlier().map(|e| e.parts).unwrap_or_default() {
        // The journal is a file of the folder: whatever else it names is
        // left alone, as is anything at a part's name but a regular file.
        let regular = std::fs::symlink_metadata(&part.path).is_ok_and(|m| m.is_file());
        if !regular || !outputs::is_part_of(output, &part.path) {
            tracing::warn!(
                "{} is not a part file of this output: left as it is",
                part.path.display()
            );
            continue;
        }
        if let Err(e) = std::fs::remove_file(&part.path) {
            tracing::warn!("cannot remove {}: {e}", part.path.display());
        }
    }
}

/// Whether the report can be written: only an earlier report is replaced,
/// never another file.
pub(super) fn check_report(report: &ReportFile) -> Result<(), RotationError> {
    files::check_replaceable(&report.path, report.may_replace(), report::is_report).map_err(
        |problem| match problem {
            PathProblem::NotOurs(path) => RotationError::NotAReport(path),
            problem => RotationError::Path {
                role: FileRole::Report,
                problem,
            },
        },
    )
}
