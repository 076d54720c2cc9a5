//! What a man page says beyond the flags: exit status, environment, files
//! and examples of each command, and the page of the config file
//! (`sip-rotate.toml(5)`). The flags' part comes from clap (`generate.rs`).

/// A section of a page: its title and its paragraphs, each a tagged item
/// (`.TP`) when it has a tag, plain text otherwise.
pub struct Section {
    pub title: &'static str,
    pub items: Vec<(Option<&'static str>, String)>,
}

/// The sections added to the page of `command` (`sip-rotate`, `sip-rotate-run`…).
pub fn sections(command: &str) -> Vec<Section> {
    let mut all = vec![exit_status(command)];
    let environment = environment(command);
    if !environment.items.is_empty() {
        all.push(environment);
    }
    let files = files(command);
    if !files.items.is_empty() {
        all.push(files);
    }
    let examples = examples(command);
    if !examples.items.is_empty() {
        all.push(examples);
    }
    all.push(Section {
        title: "SEE ALSO",
        items: vec![(
            None,
            "sip-rotate(1), sip-rotate-run(1), sip-rotate-plan(1), sip-rotate-check(1), \
             sip-rotate-status(1), sip-rotate-decrypt(1), sip-rotate.toml(5), age(1); \
             /usr/share/doc/sip-rotate/docs/operating.md and security.md, for the operator's workflow and the security model."
                .into(),
        )],
    });
    all
}

/// 2 and 3 mean the same for every command (cron and people act on them):
/// no phone was cut off; a `Confirmer` may have been sent. What leads
/// there differs by command.
const NOTHING_CUT_OFF: &str = "no Confirmer sent, no phone cut off, whatever the reason";
const MAY_BE_CUT_OFF: &str =
    "stopped after a Confirmer may have been sent: the rotation is unfinished";
/// 3 for the commands that never press Confirmer.
const SHOWN_UNASKED: (&str, &str, &str) = (
    "3",
    "a page showed a new password nobody asked for: a phone may be cut off",
    "The portal committed a reset this command did not ask for; it keeps no password, so that \
     phone's is known to nobody: reset it with sip-rotate run, and sip-rotate status tells \
     whether it is online.",
);

/// The exit codes of `command` (`run`, `sip-rotate-run`…): each in short,
/// as `--help` ends with it, and what the man page adds.
pub fn exit_codes(command: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let command = command.strip_prefix("sip-rotate-").unwrap_or(command);
    match command {
        "plan" => vec![
            ("0", "every row resolved, nothing in the way of a run", ""),
            (
                "1",
                "the plan is complete but some rows do not resolve or something is in the way",
                "The summary and the report say which; nothing was reset.",
            ),
            (
                "2",
                NOTHING_CUT_OFF,
                "Bad usage or input, a portal that cannot be reached, login refused, the plan \
                 stopped before every row resolved, interrupted (Ctrl-C, SIGTERM, SIGHUP).",
            ),
            SHOWN_UNASKED,
        ],
        "check" => vec![
            ("0", "every step and label a run needs was found", ""),
            (
                "2",
                "a label is missing or the portal could not be walked; no Confirmer sent",
                "The table says which step and label; nothing was reset. Bad usage or input, \
                 login refused and an interruption exit 2 too.",
            ),
            SHOWN_UNASKED,
        ],
        "status" => vec![
            ("0", "every phone followed is registered again", ""),
            (
                "1",
                "some phones are not registered again, or not found",
                "The summary and the status report name them.",
            ),
            (
                "2",
                "the portal could not be read: states unknown; nothing changed",
                "Bad usage or input, a portal that stopped answering, login refused, interrupted.",
            ),
            SHOWN_UNASKED,
        ],
        "decrypt" => vec![
            ("0", "every entry decrypted", ""),
            (
                "1",
                "some journal entries could not be decrypted with these identities",
                "The others are written; the message names those left.",
            ),
            (
                "2",
                "nothing decrypted",
                "Bad usage, a file that is not sip-rotate's, no matching identity.",
            ),
        ],
        "labels" => vec![
            ("0", "printed", ""),
            ("2", "bad usage, or standard output cannot be written", ""),
        ],
        "keygen" => vec![
            ("0", "written", ""),
            (
                "2",
                "bad usage, or a file in the way",
                "Nothing is written then: an existing identity is never replaced.",
            ),
        ],
        "generate" | "generate-man" | "generate-completions" => vec![
            ("0", "written", ""),
            (
                "2",
                "bad usage, or a file in the way",
                "Nothing is written then: a page is replaced only if sip-rotate wrote it.",
            ),
        ],
        "sim" => vec![
            ("0", "stopped by a signal", ""),
            ("2", "bad usage, or the address cannot be served", ""),
        ],
        _ => vec![
            ("0", "every requested reset done", ""),
            (
                "1",
                "the run went to its end, not all well (failures, unresolved rows, the report)",
                "The summary says what went wrong. Every password the portal showed is in the \
                 result; a licence that failed after its Confirmer may have its phone cut off, \
                 its password unknown: the summary names it, to reset again.",
            ),
            (
                "2",
                NOTHING_CUT_OFF,
                "Bad usage or input, a file in the way, another run on the same portal account, \
                 a portal that cannot be reached, login refused, a row that does not resolve \
                 (without --skip-unresolved), every licence failed before its Confirmer, not \
                 confirmed, interrupted (Ctrl-C, SIGTERM, SIGHUP) before any Confirmer, at the \
                 question included.",
            ),
            (
                "3",
                MAY_BE_CUT_OFF,
                "Stopped or interrupted after a Confirmer (the canary, --max-failures, a signal), \
                 or a page showed a new password nobody asked for. The new passwords are in the \
                 journal (OUTPUT.journal) and in OUTPUT.partN, as the summary says.",
            ),
        ],
    }
}

/// The line `--help` of `command` ends with.
pub fn exit_codes_in_short(command: &str) -> String {
    let codes: Vec<String> = exit_codes(command)
        .iter()
        .map(|(code, short, _)| format!("{code} {short}"))
        .collect();
    format!("Exit codes: {}.", codes.join("; "))
}

fn exit_status(command: &str) -> Section {
    let items = exit_codes(command)
        .iter()
        .map(|&(code, short, more)| {
            let mut chars = short.chars();
            let first = chars.next().map(|c| c.to_uppercase().to_string());
            let text = format!("{}{}. {more}", first.unwrap_or_default(), chars.as_str());
            (Some(code), text.trim_end().to_string())
        })
        .collect();
    Section {
        title: "EXIT STATUS",
        items,
    }
}

/// The commands that log in to the portal (and the root page, which
/// speaks of them all).
fn asks_the_portal(command: &str) -> bool {
    matches!(
        command,
        "sip-rotate"
            | "sip-rotate-run"
            | "sip-rotate-plan"
            | "sip-rotate-check"
            | "sip-rotate-status"
    )
}

fn environment(command: &str) -> Section {
    let portal = asks_the_portal(command);
    let mut items = Vec::new();
    if portal {
        items.extend([
            (
                Some("MYOPENIP_PASSWORD"),
                "The portal password. Under systemd, LoadCredential=myopenip-password:FILE hands it \
                 over instead (CREDENTIALS_DIRECTORY); otherwise password_file or password_command in \
                 the config file. Never a flag: a flag shows in the process list."
                    .into(),
            ),
            (
                Some("MYOPENIP_LOGIN"),
                "The portal login, when --login is not given.".into(),
            ),
            (
                Some("CREDENTIALS_DIRECTORY"),
                "Set by systemd for a unit with LoadCredential=: the credential myopenip-password \
                 there is the portal password."
                    .into(),
            ),
            (
                Some("SSL_CERT_FILE"),
                "A PEM file of the certificate authorities the HTTP engine trusts, in place of the \
                 system's; a private authority of the portal goes in --ca-file instead (both engines)."
                    .into(),
            ),
            (
                Some("SIP_ROTATE_BROWSER"),
                "The Chromium binary of the browser engine, when --browser is not given (default: \
                 chromium on the PATH)."
                    .into(),
            ),
            (
                Some("STATE_DIRECTORY, XDG_STATE_HOME, HOME"),
                "Where the run locks are kept: systemd's StateDirectory=, else \
                 $XDG_STATE_HOME/sip-rotate, else ~/.local/state/sip-rotate."
                    .into(),
            ),
            (
                Some("TMPDIR"),
                "Where the browser engine's profile folder is made (mode 0700, removed at the end)."
                    .into(),
            ),
        ]);
    }
    if command != "sip-rotate-generate" && command != "sip-rotate-labels" {
        items.extend([
            (
                Some("SIP_ROTATE_LOG"),
                "A tracing filter for the log on stderr (e.g. sip_rotate=debug); it can never show \
                 what the scrubber removes."
                    .into(),
            ),
            (
                Some("NO_COLOR"),
                "Set: no colour on the terminal.".into(),
            ),
        ]);
    }
    if command == "sip-rotate-sim" {
        items.push((
            Some("SIM_LOGIN, SIM_PASSWORD"),
            "The simulated portal's login and password.".into(),
        ));
    }
    Section {
        title: "ENVIRONMENT",
        items,
    }
}

fn files(command: &str) -> Section {
    let mut items = Vec::new();
    if matches!(command, "sip-rotate" | "sip-rotate-run") {
        items.extend([
            (
                Some("OUTPUT"),
                "The result (-o): age-encrypted CSV of licence, SDA, new password and the rest; \
                 written whole under a temporary name, then renamed. Never replaced."
                    .into(),
            ),
            (
                Some("OUTPUT.journal"),
                "Each new password, encrypted to the recipients and flushed before the licence counts \
                 as done. Removed once the result holds every password; while it is there, the next \
                 run of the same output pattern stops and asks for --resume."
                    .into(),
            ),
            (
                Some("OUTPUT.partN"),
                "The passwords of a run that stopped, complete and encrypted; the journal names them."
                    .into(),
            ),
            (
                Some("REPORT"),
                "The report (--report): one row per licence, no password.".into(),
            ),
        ]);
    }
    if asks_the_portal(command) {
        items.extend([
            (
                Some("/etc/sip-rotate/rotation.toml"),
                "The settings of a scheduled run, given with --config (see sip-rotate.toml(5)); the \
                 unit sip-rotate.service reads it."
                    .into(),
            ),
            (
                Some("~/.local/state/sip-rotate/"),
                "The run locks, one per portal account (named after a hash of the login).".into(),
            ),
        ]);
    }
    Section {
        title: "FILES",
        items,
    }
}

fn examples(command: &str) -> Section {
    let list: &[(&str, &str)] = match command {
        "sip-rotate" | "sip-rotate-run" => &[
            (
                "A rotation after an incident, the canary first (the default):",
                "export MYOPENIP_PASSWORD=...\n\
                 sip-rotate run --input licences.csv \\\n\
                 \x20   --portal https://portal.example/ --login reseller \\\n\
                 \x20   -r age1... -o 'rotation-%Y%m%d-%H%M%S.csv.age' \\\n\
                 \x20   --report report.csv",
            ),
            (
                "The monthly run of a timer, every setting in the config file:",
                "sip-rotate run --config /etc/sip-rotate/rotation.toml --yes --quiet",
            ),
            (
                "Finishing a run that was stopped (its journal is there):",
                "sip-rotate run --config /etc/sip-rotate/rotation.toml --yes --resume",
            ),
            (
                "Retrying what failed, from the report (the retry's own report \
                 under another name: report.csv is its input):",
                "sip-rotate run --input report.csv ... \\\n\
                 \x20   -o 'retry-%H%M%S.csv.age' --report retry-report.csv",
            ),
        ],
        "sip-rotate-plan" => &[(
            "What a run would reset, resetting nothing:",
            "sip-rotate plan --input licences.csv \\\n\
             \x20   --portal https://portal.example/ --login reseller",
        )],
        "sip-rotate-check" => &[(
            "Every label a run needs, on one licence's pages; never confirms:",
            "sip-rotate check --input licences.csv \\\n\
             \x20   --portal https://portal.example/ --login reseller",
        )],
        "sip-rotate-status" => &[(
            "Which phones are back online after a rotation, until all are:",
            "sip-rotate status --input report.csv --watch 30 \\\n\
             \x20   --portal https://portal.example/ --login reseller",
        )],
        "sip-rotate-decrypt" => &[(
            "The new passwords, as CSV:",
            "sip-rotate decrypt -i identity.txt -o passwords.csv \\\n\
             \x20   rotation-20261203-0200.csv.age",
        )],
        "sip-rotate-keygen" => &[(
            "An identity for whoever reconfigures the phones; its public key goes to -r:",
            "sip-rotate keygen -o identity.txt",
        )],
        "sip-rotate-generate" => &[(
            "The man pages and bash completions, for the current user:",
            "sip-rotate generate man ~/.local/share/man/man1\n\
             dir=~/.local/share/bash-completion/completions\n\
             mkdir -p $dir\n\
             sip-rotate generate completions bash > $dir/sip-rotate",
        )],
        "sip-rotate-demo" => &[(
            "The whole job on the embedded simulator:",
            "sip-rotate demo",
        )],
        _ => &[],
    };
    Section {
        title: "EXAMPLES",
        items: list
            .iter()
            .map(|(what, how)| (None, format!("{what}\n.PP\n.nf\n.RS 4\n{how}\n.RE\n.fi")))
            .collect(),
    }
}

/// The synopsis, each option with its value's name (`[--input FILE]`), as
/// `--help` shows them (clap_mangen's drops the values).
pub fn synopsis(cmd: &clap::Command) -> String {
    let name = cmd
        .get_bin_name()
        .map(str::to_string)
        .unwrap_or_else(|| cmd.get_name().to_string());
    let mut parts = vec![format!("\\fB{}\\fR", escaped(&name))];
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
        let takes_value = arg.get_action().takes_values();
        let repeated = matches!(arg.get_action(), clap::ArgAction::Append);
        let text = if arg.is_positional() {
            format!("\\fI{}\\fR", escaped(&value))
        } else {
            let flag = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR|\\fB\\-\\-{}\\fR", escaped(l)),
                (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", escaped(l)),
                (Some(s), None) => format!("\\fB\\-{s}\\fR"),
                (None, None) => continue,
            };
            // A value that may be left out is written with '=' (clap
            // takes `--resume=auto`, never `--resume auto`).
            let optional = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
            if takes_value && optional && arg.is_require_equals_set() {
                format!("{flag}[=\\fI{}\\fR]", escaped(&value))
            } else if takes_value {
                format!("{flag} \\fI{}\\fR", escaped(&value))
            } else {
                flag
            }
        };
        let text = if repeated { format!("{text}...") } else { text };
        parts.push(if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        });
    }
    if cmd.has_subcommands() {
        parts.push("\\fICOMMAND\\fR".into());
    }
    format!(".SH SYNOPSIS\n{}\n", parts.join(" "))
}

/// Text for roff: backslashes and hyphens escaped, no line read as a
/// request. Lines made here that begin with `.` (`.nf`, `.PP`) are kept.
fn escaped(text: &str) -> String {
    text.lines()
        .map(|line| {
            if [".PP", ".nf", ".fi", ".RS 4", ".RE"].contains(&line) {
                return line.to_string();
            }
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sections as roff.
pub fn roff(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        out.push_str(&format!(".SH \"{}\"\n", section.title));
        for (tag, text) in &section.items {
            match tag {
                Some(tag) => out.push_str(&format!(".TP\n\\fB{}\\fR\n", escaped(tag))),
                None => out.push_str(".PP\n"),
            }
            out.push_str(&escaped(text));
            out.push('\n');
        }
    }
    out
}

/// The page of the config file, `sip-rotate.toml(5)`: what it is, its
/// rules, and the sample with every key.
pub fn config_page(version: &str) -> String {
    let sample = include_str!("../../samples/rotation.toml");
    // The first lines clap_mangen gives every page: how `generate` tells
    // a page of its own from another file (see `generate::PAGE_START`).
    let mut page = format!(
        ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH sip-rotate.toml 5 \"\" \"sip-rotate {version}\" \"sip-rotate manual\"\n"
    );
    page.push_str(&roff(&[
        Section {
            title: "NAME",
            items: vec![(
                None,
                "sip-rotate.toml - the settings of a scheduled sip-rotate run".into(),
            )],
        },
        Section {
            title: "SYNOPSIS",
            items: vec![(
                None,
                "sip-rotate run --config /etc/sip-rotate/rotation.toml (also plan, check and status)"
                    .into(),
            )],
        },
        Section {
            title: "DESCRIPTION",
            items: vec![
                (
                    None,
                    "A TOML file that holds what a cron line or a systemd unit should not repeat. \
                     Each key but lock, identities, recipients, allow_origins, password_command \
                     and password_command_timeout is the name of a flag with _ for -, \
                     and takes the flag's value; a flag given on the command line wins. identities, \
                     recipients and allow_origins are lists of what -i, -r and --allow-origin take. \
                     lock names the run lock's file (one for every run of the file, by hand too). A relative path is taken from the file's own \
                     folder. A key the command does not know is an error that names it, with its \
                     line; a value is never shown in an error."
                        .into(),
                ),
                (
                    None,
                    "The portal password is never a key: systemd's LoadCredential= hands it over \
                     (credential myopenip-password), or password_file names a file of mode 0600, or \
                     password_command a command whose first line of output it is (within \
                     password_command_timeout seconds, 120 unless set: a command that waits for a \
                     passphrase would hold a scheduled run), or MYOPENIP_PASSWORD."
                        .into(),
                ),
                (
                    None,
                    "resume = \"auto\" finishes a run of the same output pattern that was stopped (its \
                     journal is there), and starts afresh otherwise: what a timer's run wants. With \
                     identities (the -i of run, each may start with $CREDENTIALS_DIRECTORY/), the run \
                     that finishes reads the journal and writes the whole rotation to one result; \
                     without, the stopped run's passwords stay in its part file, and the journal goes \
                     once every password it holds is in a complete file."
                        .into(),
                ),
            ],
        },
    ]));
    page.push_str(".SH EXAMPLE\n.PP\nThe sample shipped with sip\\-rotate, every key shown:\n.PP\n.nf\n.RS 4\n");
    page.push_str(&escaped(sample));
    page.push_str("\n.RE\n.fi\n");
    page.push_str(&roff(&[Section {
        title: "SEE ALSO",
        items: vec![(
            None,
            "sip-rotate(1), sip-rotate-run(1), systemd.exec(5)".into(),
        )],
    }]));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_cannot_start_a_request() {
        assert_eq!(escaped(".x 'y' -z"), "\\&.x 'y' \\-z");
        assert_eq!(escaped("'quoted"), "\\&'quoted");
        assert_eq!(escaped("a\\b"), "a\\eb");
    }
}
