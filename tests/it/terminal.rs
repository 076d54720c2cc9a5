//! On a terminal `run` says how many phones will be cut off and asks; the
//! answer decides. The terminal is a pseudo-terminal made by `script(1)`.

use crate::common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Whether `script(1)` is here; in CI (`SIP_ROTATE_REQUIRE_SCRIPT`) it must be.
fn have_script() -> bool {
    let here = Command::new("script").arg("--version").output().is_ok();
    if !here && std::env::var_os("SIP_ROTATE_REQUIRE_SCRIPT").is_some() {
        panic!("script(1) is required here (SIP_ROTATE_REQUIRE_SCRIPT): apt-get install bsdutils");
    }
    if !here {
        eprintln!("no script(1) (util-linux): the terminal is not checked");
    }
    here
}

/// Runs `command` under a pseudo-terminal, typing `answer`; returns (exit
/// code, what the terminal showed). Its runs keep their locks in `sim`'s state.
fn on_a_terminal(sim: &Sim, command: &str, answer: &str) -> Option<(i32, String)> {
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn on_a_terminal_it_asks_before_cutting_phones_off() {
    if !have_script() {
        return;
    }
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let command = |output: &str| {
        format!(
            "{} run --input {} --portal {} --login {LOGIN} -r {public} -o {} --rate 100",
            bin().display(),
            input.display(),
            sim.url,
            dir.path().join(output).display()
        )
    };

    let (code, screen) = on_a_terminal(&sim, &command("no.age"), "n\n").unwrap();
    // The phones registered now, as the portal's État shows them.
    let ds = sip_rotate::sim::dataset::Dataset::generate(&sip_rotate::sim::dataset::DatasetSpec {
        seed: 1,
        clients: 12,
        licences_per_client: 8,
    });
    let in_use = (0..ds.licences.len())
        .filter(|&i| ds.client_of_service(ds.licences[i].service).reference == "4054")
        .filter(|&i| ds.initially_connected(i))
        .count();
    assert!(in_use > 0 && in_use < 8);
    assert!(
        screen.contains(&format!(
            "About to reset 8 SIP passwords: {in_use} phones in use will be cut off"
        )),
        "{screen}"
    );
    assert!(screen.contains("not confirmed"), "{screen}");
    // Said first, in red: nothing was done.
    assert!(
        screen.contains("\u{1b}[1;31mNOTHING RESET: no phone was cut off (exit 2)"),
        "{screen}"
    );
    assert_eq!(code, 2);
    assert!(sim.resets().is_empty());

    let (code, screen) = on_a_terminal(&sim, &command("yes.age"), "y\n").unwrap();
    assert_eq!(code, 0, "{screen}");
    assert_eq!(sim.resets().len(), 8);
    assert!(screen.contains("licences: 8 reset"), "{screen}");
    assert_no_clear_password(
        &sim.resets(),
        &[("terminal".into(), screen.into_bytes())],
        &sim.truth,
    );
}

/// A portal that keeps asking to slow down: above the bars, one line counts
/// its 429s and says what to do; no warning line for each. The summary
/// says the run went well, first, in green, and repeats the advice.
#[test]
fn repeated_slow_downs_are_one_line_with_its_advice() {
    if !have_script() {
        return;
    }
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--rate-limit", "5", "--latency-ms", "5"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n").unwrap();
    let command = format!(
        "TERM=xterm {} run --input {} --portal {} --login {LOGIN} -r {public} -o {} --yes --rate 20",
        bin().display(),
        input.display(),
        sim.url,
        dir.path().join("out.age").display()
    );
    let (code, screen) = on_a_terminal(&sim, &command, "").unwrap();
    assert_eq!(code, 0, "{screen}");
    let counters = sim.stop();
    assert!(counters["too_many_requests"] > 1, "{counters:?}");
    assert!(
        screen.contains("warning: the portal asked to slow down")
            && screen.contains("times: try --rate 10 or lower"),
        "one line, counting: {screen}"
    );
    assert!(
        !screen.contains("WARN"),
        "no warning line of each 429: {screen}"
    );
    assert!(
        screen.contains("\u{1b}[1;32mdone: every licence asked for was reset"),
        "{screen}"
    );
    // Below what the portal let through (5 a second here), not half of 20.
    let suggested: f64 = screen
        .split("hint: the portal asked to slow down")
        .nth(1)
        .and_then(|rest| rest.split("try --rate ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no suggested rate: {screen}"));
    assert!(suggested > 0.0 && suggested <= 5.0, "{suggested}: {screen}");
}

/// A warning during the progress bar goes on its own line: the bar is
/// hidden while it is written, then drawn again below it.
#[test]
fn warnings_do_not_break_into_the_progress_bar() {
    if !have_script() {
        return;
    }
    // Half the confirmations lost: each one is a warning, then a new reset.
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&["--drop-rate", "0.5", "--latency-ms", "10"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let command = format!(
        "TERM=xterm {} run --input {} --portal {} --login {LOGIN} -r {public} -o {} --yes --rate 50 --max-resets 20",
        bin().display(),
        input.display(),
        sim.url,
        dir.path().join("out.age").display()
    );
    let (code, screen) = on_a_terminal(&sim, &command, "").unwrap();
    assert!(matches!(code, 0 | 1), "{screen}");
    assert!(
        screen.contains("outcome unknown, taken again"),
        "warnings shown: {screen}"
    );
    assert!(screen.contains("resetting ["), "the bar shown: {screen}");
    assert!(
        screen.contains("resolving [") && screen.contains("2/2 clients"),
        "resolution shown too: {screen}"
    );
    // What each line shows once drawn: the text after its last carriage
    // return (the terminal ends each line with "\r\n").
    for line in screen.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let shown = line.rsplit('\r').next().unwrap_or("");
        assert!(
            !(shown.contains("resetting [") && shown.contains("taken again")),
            "a warning inside the bar's line: {shown:?}"
        );
    }
    assert_no_clear_password(
        &sim.resets(),
        &[("terminal".into(), screen.into_bytes())],
        &sim.truth,
    );
}

/// On an 80-column terminal, what `check`, `plan` and a run that partly
/// failed show fits: long lines (a failure, its hint, the requests, a
/// plan's row) wrap at spaces. The same lines in a pipe stay whole.
#[test]
fn what_the_commands_show_fits_80_columns() {
    if !have_script() {
        return;
    }
    let Setup {
        dir, sim, public, ..
    } = Setup::new(&[
        "--fail-page",
        "detail:FPC173010",
        // A Confirmer answered 503 each time: the same warning at each try.
        "--fail-page",
        "confirm:FPC172910",
        "--latency-ms",
        "5",
    ]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let common = format!(
        "--input {} --portal {} --login {LOGIN} --rate 100",
        input.display(),
        sim.url
    );
    let bin = bin().display().to_string();
    let command = format!(
        "stty cols 80 rows 24; export TERM=xterm; {bin} demo --latency-ms 5 --rate 200; {bin} check {common}; {bin} plan {common}; {bin} status {common}; {bin} run {common} -r {public} -o {} --yes --canary 0",
        dir.path().join("out.age").display()
    );
    let (code, screen) = on_a_terminal(&sim, &command, "").unwrap();
    assert_eq!(code, 1, "{screen}");
    // The screen's lines as drawn: a colour is dropped, and an escape that
    // moves the cursor (the bars redrawn) starts another line, as \r, \n
    // and a bar do.
    let mut lines = vec![String::new()];
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: parameters, then one final letter.
                let end = chars.by_ref().find(|c| c.is_ascii_alphabetic());
                if end != Some('m') {
                    lines.push(String::new());
                }
            }
            '\r' | '\n' => lines.push(String::new()),
            // A bar's spinner: a bar drawn as wide as the terminal is
            // followed by the next bar with no line break (the terminal
            // wraps there).
            '\u{2800}'..='\u{28ff}' => lines.push(c.to_string()),
            c => lines.last_mut().unwrap().push(c),
        }
    }
    // A line the bars drew (a bar, a warning above them) is padded to the
    // terminal's width, and the terminal goes on to its next row: its
    // 80th column is blank, what came before it fits.
    let lines: Vec<String> = lines
        .into_iter()
        .flat_map(|line| {
            let mut rows = Vec::new();
            let mut rest: Vec<char> = line.chars().collect();
            while rest.len() > 80 && rest[79] == ' ' {
                rows.push(rest.drain(..80).collect::<String>());
            }
            rows.push(rest.into_iter().collect());
            rows
        })
        .collect();
    let mut wrapped = 0;
    for shown in &lines {
        assert!(
            shown.chars().count() <= 80,
            "{} columns: {shown:?}",
            shown.chars().count()
        );
        wrapped += usize::from(shown.starts_with("  ") && !shown.starts_with("   "));
    }
    // It did wrap (the failure's hint is longer than 80 columns).
    assert!(
        screen.contains("FPC173010: no usable answer from the portal"),
        "{screen}"
    );
    assert!(wrapped > 0, "{screen}");
    // The warning said at each try of the Confirmer is one line that
    // counts them, still there once the bars are gone.
    let after_the_bars = screen.rsplit("\u{1b}[2K").next().unwrap();
    assert!(
        after_the_bars.contains("warning (4 times): FPC172910: Confirmer answered"),
        "{screen}"
    );
    assert!(!screen.contains("WARN"), "{screen}");
    // The demo and status were shown too.
    assert!(screen.contains("passwords masked"), "{screen}");
    assert!(screen.contains("still down"), "{screen}");
    // The same hint in a pipe: one line.
    let out = run_cmd(&sim, &input, &dir.path().join("piped.age"), &public)
        .args(["--yes", "--canary", "0", "--rate", "100"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.lines()
            .any(|l| l.starts_with("hint: ") && l.chars().count() > 80),
        "{said}"
    );
}

/// The terminal goes away under a running run (an ssh session dropped): a
/// hang-up, and nothing can be written there any more. The run stops as on
/// any signal: its passwords in the part file and the journal, its report
/// written.
#[test]
fn a_terminal_that_goes_away_stops_the_run_cleanly() {
    if !have_script() {
        return;
    }
    let Setup {
        dir,
        sim,
        identity,
        public,
    } = Setup::new(&["--latency-ms", "30"]);
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "client_ref,licence\n4054,*\n4082,*\n").unwrap();
    let output = dir.path().join("out.age");
    let report = dir.path().join("report.csv");
    let command = format!(
        "TERM=xterm {} run --input {} --portal {} --login {LOGIN} -r {public} -o {} --yes --rate 20 --report {}",
        bin().display(),
        input.display(),
        sim.url,
        output.display(),
        report.display()
    );
    let mut terminal = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("MYOPENIP_PASSWORD", PASSWORD)
        .env("XDG_STATE_HOME", &sim.state)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_resets(&sim, 2);
    // The terminal closes: its master end is gone.
    signal(&terminal, "-KILL");
    terminal.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !report.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never ended cleanly (no report)"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let part = dir.path().join("out.age.part1");
    assert!(part.exists(), "the passwords of the run in a part file");
    let truth = sim.resets();
    assert!(truth.len() < 16, "stopped before the end");
    let mut found = decrypt(&identity, &part);
    found.extend(decrypt(&identity, &dir.path().join("out.age.journal")));
    for (licence, password) in last_passwords(&truth) {
        assert!(
            found
                .iter()
                .any(|r| r["licence"] == licence && r["password"] == password),
            "{licence} lost"
        );
    }
    let statuses: Vec<String> = parse_csv(&std::fs::read(&report).unwrap())
        .into_iter()
        .map(|r| r["status"].clone())
        .collect();
    assert!(statuses.iter().any(|s| s == "skipped"), "{statuses:?}");
}
