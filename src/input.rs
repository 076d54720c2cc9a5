//! The input CSV: which licences of which clients to reset.
//!
//! Header `client_ref,licence` plus optional `service_ref` and `sda`; the
//! portal's French headers (`Réf. du client`, `Licence`, `Réf. du service`,
//! `SDA`) are accepted too. Files come as people have them: `;`, `,` or tab
//! separators, UTF-8 with or without BOM or Windows-1252, CRLF, spaces
//! around values. Any bad input is an error naming file, line and column;
//! nothing is reset then.

use crate::phone;
use crate::report::Status;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which licences of a client a row asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenceSelector {
    /// `*`: every licence of the client's MetaCentrex services.
    All,
    One(String),
}

impl fmt::Display for LicenceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LicenceSelector::All => f.write_str("*"),
            LicenceSelector::One(l) => f.write_str(l),
        }
    }
}

/// One row of the input.
#[derive(Debug, Clone)]
pub struct InputRow {
    /// The line of the file the row starts on (1 is the header).
    pub line: u64,
    pub client_ref: String,
    pub service_ref: Option<String>,
    pub licence: LicenceSelector,
    pub sda: Option<String>,
}

/// A bad input: where, what, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InputError {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<(usize, String)>,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_stdin(&self.file) {
            f.write_str("standard input")?;
        } else {
            write!(f, "{}", self.file.display())?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some((n, name)) = &self.column {
            write!(f, ", column {n} ({name})")?;
        }
        // What to do is the binary's to say, beside the message (a JSON
        // error's `hint`, the line under it on a terminal).
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    ClientRef,
    Licence,
    ServiceRef,
    Sda,
    /// A report's `status`: the file is a report of an earlier run.
    Status,
    /// A report's `accountcode`: what tells look-alike phones apart.
    AccountCode,
    /// A report's `confirmations`: whether a failed reset may have cut its
    /// phone off all the same.
    Confirmations,
    /// A report's other columns (line, requests...): not read.
    ReportOnly,
    /// What a person reads beside a licence (a status report's name and
    /// state): allowed in any file, not read.
    Informative,
}

impl Column {
    /// A column only a report has.
    fn of_report(c: Option<Column>) -> bool {
        matches!(c, Some(Column::ReportOnly | Column::Confirmations))
    }
}

const HEADER_HINT: &str = "the header must name the columns client_ref and licence, and may add service_ref and sda \
     (or in French: Réf. du client, Licence, Réf. du service, SDA); a report of an earlier run is read as it is";

fn column_of(header: &str) -> Option<Column> {
    let key = header
        .split(|c: char| c.is_whitespace() || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    Some(match key.as_str() {
        "client_ref" | "réf. du client" | "ref. du client" | "réf du client" | "compte client" => {
            Column::ClientRef
        }
        "licence" | "license" => Column::Licence,
        "service_ref" | "réf. du service" | "ref. du service" | "réf du service" => {
            Column::ServiceRef
        }
        "sda" => Column::Sda,
        "status" => Column::Status,
        "accountcode" => Column::AccountCode,
        "confirmations" => Column::Confirmations,
        "name" | "nom" | "etat" | "état" | "state" => Column::Informative,
        "line" | "requests" | "session" | "engine" | "detail" => Column::ReportOnly,
        _ => return None,
    })
}

/// A row of a report that a retry leaves out, and why.
#[derive(Debug, Clone)]
pub struct LeftOut {
    pub line: u64,
    pub status: Reported,
    pub client_ref: String,
    pub service_ref: String,
    pub licence: String,
    pub sda: String,
    /// The phone's account code, when the earlier run read it.
    pub accountcode: String,
}

/// What an earlier run's report says of a row that is not simply retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The earlier run reset it: not again.
    Reset,
    /// Another row of that run covered it.
    Duplicate,
    /// It failed after a `Confirmer` was sent: its phone may be cut off.
    FailedAfterConfirmer,
}

impl Reported {
    /// As the report's `status` column says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reported::Reset => "reset",
            Reported::Duplicate => "duplicate",
            Reported::FailedAfterConfirmer => "failed",
        }
    }
}

/// What an input file asks for.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The rows to reset (of a report: the rows to retry).
    pub rows: Vec<InputRow>,
    pub kind: InputKind,
}

/// The two kinds of input file.
#[derive(Debug, Clone, Default)]
pub enum InputKind {
    /// A list of licences, each row asked for.
    #[default]
    Licences,
    /// The report of an earlier run.
    Report {
        /// Its rows not retried (reset, duplicates).
        left_out: Vec<LeftOut>,
        /// Of its `failed` rows, those whose `Confirmer` was sent: the
        /// reset may have happened, and the phone be cut off (retried too).
        maybe_cut_off: Vec<LeftOut>,
    },
}

impl InputRow {
    /// The row as the journal records what the run was asked.
    pub fn asked(&self) -> crate::vault::AskedRow {
        crate::vault::AskedRow {
            client_ref: self.client_ref.clone(),
            service_ref: self.service_ref.clone().unwrap_or_default(),
            licence: self.licence.to_string(),
        }
    }

    /// Whether this row asks for everything `asked` did: the same client,
    /// a service and a licence that are the same or wider (no service, `*`).
    pub fn covers(&self, asked: &crate::vault::AskedRow) -> bool {
        self.client_ref == asked.client_ref
            && self
                .service_ref
                .as_ref()
                .is_none_or(|s| *s == asked.service_ref)
            && match &self.licence {
                LicenceSelector::All => true,
                LicenceSelector::One(l) => *l == asked.licence,
            }
    }
}

impl Input {
    /// A report's rows not retried; none for a list of licences.
    pub fn left_out(&self) -> &[LeftOut] {
        match &self.kind {
            InputKind::Licences => &[],
            InputKind::Report { left_out, .. } => left_out,
        }
    }
}

/// Text of the file: BOM removed, UTF-8 if valid, else Windows-1252.
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

/// The separator that splits the header line most: `;`, `,` or tab.
fn separator(header_line: &str) -> u8 {
    [b';', b',', b'\t']
        .into_iter()
        .max_by_key(|&s| header_line.bytes().filter(|&b| b == s).count())
        .unwrap_or(b',')
}

/// The line where a quote is left open, if one is.
fn open_quote(text: &str) -> Option<u64> {
    let mut line = 1;
    let mut opened_at = None;
    for c in text.chars() {
        match c {
            '"' => {
                opened_at = if opened_at.is_some() {
                    None
                } else {
                    Some(line)
                }
            }
            '\n' => line += 1,
            _ => {}
        }
    }
    opened_at
}

fn valid_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_licence(s: &str) -> bool {
    (3..=32).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_digit())
}

/// The largest input read: a million rows of the longest kind.
const MAX_INPUT: usize = 64 << 20;
/// The longest line: far above any real row.
const MAX_LINE: usize = 1024;

/// The file's bytes (`-`: standard input's), or `None` if it is larger
/// than `MAX_INPUT`.
fn read_bounded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let source: Box<dyn Read> = if is_stdin(path) {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(path)?)
    };
    source.take(MAX_INPUT as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= MAX_INPUT).then_some(bytes))
}

/// Whether an input path means standard input (`-`).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// A value as an error message shows it: at most 40 characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_string(),
    }
}

/// Reads and checks the whole input.
pub fn read(path: &Path) -> Result<Input, InputError> {
    let err = |line: Option<u64>, column: Option<(usize, String)>, message: String, hint: &str| {
        InputError {
            file: path.to_path_buf(),
            line,
            column,
            message,
            hint: hint.to_string(),
        }
    };
    let bytes = read_bounded(path).map_err(|e| {
        err(
            None,
            None,
            format!("cannot read the file: {e}"),
            "check the input's path",
        )
    })?;
    let bytes = bytes.ok_or_else(|| {
        err(
            None,
            None,
            format!("the file is larger than {} MiB", MAX_INPUT >> 20),
            "an input names licences, a few dozen bytes each: is this the right file?",
        )
    })?;
    // A workbook saved as it is, not exported: a zip (xlsx, ods) or an
    // OLE file (xls) begins so.
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"\xD0\xCF\x11\xE0") {
        return Err(err(
            None,
            None,
            "the file is a spreadsheet workbook (Excel or LibreOffice), not CSV".into(),
            "save it as CSV (File > Save As > CSV UTF-8, or Text CSV) and give that file",
        ));
    }
    if let Some(line) = bytes
        .split(|&b| b == b'\n')
        .position(|l| l.len() > MAX_LINE)
    {
        return Err(err(
            Some(line as u64 + 1),
            None,
            format!("the line is longer than {MAX_LINE} bytes"),
            "a row names a client, a licence, a service and a number: is this the right file?",
        ));
    }
    // CRLF to LF: the csv crate counts lines one short after a CRLF row end,
    // and error messages must name the line Excel shows.
    let text = decode(&bytes).replace("\r\n", "\n");
    if text.trim().is_empty() {
        let what = if bytes.is_empty() {
            "the file is empty"
        } else {
            "the file holds only blank lines: no header, no row"
        };
        return Err(err(None, None, what.into(), HEADER_HINT));
    }
    if let Some(line) = open_quote(&text) {
        return Err(err(
            Some(line),
            None,
            "a quote (\") opened on this line is never closed".into(),
            "close the quote, or remove it",
        ));
    }
    let header_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator(header_line))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| {
            err(
                Some(1),
                None,
                format!("unreadable header: {e}"),
                HEADER_HINT,
            )
        })?
        .clone();
    let mut columns: Vec<Option<Column>> = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let c = column_of(h);
        if c.is_none() && !h.is_empty() {
            return Err(err(
                Some(1),
                Some((i + 1, shown(h))),
                format!("unknown column '{}'", shown(h)),
                HEADER_HINT,
            ));
        }
        if c.is_some()
            && !matches!(c, Some(Column::ReportOnly | Column::Informative))
            && columns.contains(&c)
        {
            return Err(err(
                Some(1),
                Some((i + 1, shown(h))),
                format!("column '{h}' is given twice"),
                HEADER_HINT,
            ));
        }
        columns.push(c);
    }
    let report = columns.contains(&Some(Column::Status));
    if !report && let Some(i) = columns.iter().position(|c| Column::of_report(*c)) {
        return Err(err(
            Some(1),
            Some((i + 1, shown(&headers[i]))),
            format!(
                "column '{}' belongs to a report, and this file has no status column",
                shown(&headers[i])
            ),
            HEADER_HINT,
        ));
    }
    for (needed, name) in [
        (Column::ClientRef, "client_ref"),
        (Column::Licence, "licence"),
    ] {
        if !columns.contains(&Some(needed)) {
            return Err(err(
                Some(1),
                None,
                format!("missing column '{name}'"),
                HEADER_HINT,
            ));
        }
    }
    let mut rows = Vec::new();
    let mut left_out = Vec::new();
    let mut maybe_cut_off = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line());
            err(
                line,
                None,
                format!("unreadable row: {e}"),
                "check the separators and quotes of this line",
            )
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() > headers.len() && record.iter().skip(headers.len()).any(|f| !f.is_empty())
        {
            return Err(err(
                Some(line),
                Some((headers.len() + 1, "beyond the header".into())),
                format!("{} values for {} columns", record.len(), headers.len()),
                "a value may contain the separator: put it between double quotes",
            ));
        }
        let get = |wanted: Column| -> (usize, String, String) {
            let i = columns
                .iter()
                .position(|c| *c == Some(wanted))
                .expect("checked above");
            // A report writes a value a spreadsheet would run as `="value"`.
            let value = crate::dialect::unguard(record.get(i).unwrap_or("")).into_owned();
            (i + 1, headers[i].to_string(), value)
        };
        // A report's rows that the earlier run reset, or that another row
        // covers, are not retried.
        if report {
            let (si, sname, status) = get(Column::Status);
            let Ok(status) = status.parse::<Status>() else {
                return Err(err(
                    Some(line),
                    Some((si, sname)),
                    format!("unknown status '{}'", shown(status.trim())),
                    "a report's status is reset, duplicate, failed, unresolved, skipped or planned: the rows reset or duplicate are not retried, the others are",
                ));
            };
            let value = |c: Column| {
                if columns.contains(&Some(c)) {
                    get(c).2
                } else {
                    String::new()
                }
            };
            let row = |status: Reported| LeftOut {
                line,
                status,
                client_ref: value(Column::ClientRef),
                service_ref: value(Column::ServiceRef),
                licence: value(Column::Licence),
                sda: value(Column::Sda),
                accountcode: value(Column::AccountCode),
            };
            match status {
                Status::Reset => {
                    left_out.push(row(Reported::Reset));
                    continue;
                }
                Status::Duplicate => {
                    left_out.push(row(Reported::Duplicate));
                    continue;
                }
                _ => {}
            }
            let confirmed = value(Column::Confirmations)
                .trim()
                .parse::<u32>()
                .unwrap_or(0);
            if status == Status::Failed && confirmed > 0 {
                maybe_cut_off.push(row(Reported::FailedAfterConfirmer));
            }
        }
        let (ci, cname, client_ref) = get(Column::ClientRef);
        if !valid_reference(&client_ref) {
            let message = if client_ref.is_empty() {
                "the client reference is empty".to_string()
            } else {
                format!("malformed client reference '{}'", shown(&client_ref))
            };
            return Err(err(
                Some(line),
                Some((ci, cname)),
                message,
                "a client reference is the portal's 'Compte client', e.g. 4021",
            ));
        }
        let (li, lname, licence) = get(Column::Licence);
        let licence = if licence == "*" {
            LicenceSelector::All
        } else if valid_licence(&licence) {
            LicenceSelector::One(licence)
        } else {
            let message = if licence.is_empty() {
                "the licence is empty".to_string()
            } else {
                format!("malformed licence reference '{}'", shown(&licence))
            };
            return Err(err(
                Some(line),
                Some((li, lname)),
                message,
                "a licence is the first word of the portal's 'Licence' column, e.g. FPC172947, or * for every licence of the client",
            ));
        };
        let service_ref = if columns.contains(&Some(Column::ServiceRef)) {
            let (si, sname, s) = get(Column::ServiceRef);
            if !s.is_empty() && !valid_reference(&s) {
                return Err(err(
                    Some(line),
                    Some((si, sname)),
                    format!("malformed service reference '{}'", shown(&s)),
                    "a service reference is the portal's 'Réf. du service'",
                ));
            }
            Some(s).filter(|s| !s.is_empty())
        } else {
            None
        };
        let sda = if columns.contains(&Some(Column::Sda)) {
            let (di, dname, s) = get(Column::Sda);
            if !s.is_empty() && !phone::is_plausible(&s) {
                return Err(err(
                    Some(line),
                    Some((di, dname)),
                    format!("'{}' is not a phone number", shown(&s)),
                    "write the SDA as 01 84 78 78 80, 0184787880 or +33184787880, or leave it empty",
                ));
            }
            if !s.is_empty() && licence == LicenceSelector::All {
                return Err(err(
                    Some(line),
                    Some((di, dname)),
                    "an SDA cannot check '*' (every licence)".into(),
                    "leave the SDA empty on a '*' line",
                ));
            }
            Some(s).filter(|s| !s.is_empty())
        } else {
            None
        };
        rows.push(InputRow {
            line,
            client_ref,
            service_ref,
            licence,
            sda,
        });
    }
    if rows.is_empty() && left_out.is_empty() {
        return Err(err(
            None,
            None,
            "the file has a header but no row".into(),
            "add one line per licence to reset",
        ));
    }
    Ok(Input {
        rows,
        kind: if report {
            InputKind::Report {
                left_out,
                maybe_cut_off,
            }
        } else {
            InputKind::Licences
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_bytes(bytes: &[u8]) -> Result<Vec<InputRow>, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.csv");
        std::fs::write(&p, bytes).unwrap();
        read(&p).map(|i| i.rows)
    }

    #[test]
    fn a_workbook_is_refused_with_the_way_to_csv() {
        for start in [
            &b"PK\x03\x04\x14\x00rest"[..],
            &b"\xD0\xCF\x11\xE0\xA1\xB1rest"[..],
        ] {
            let e = read_bytes(start).unwrap_err();
            assert!(e.to_string().contains("spreadsheet workbook"), "{e}");
            assert!(e.hint.contains("save it as CSV"), "{}", e.hint);
        }
    }

    #[test]
    fn excel_french_csv_is_read() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(encoding_rs::WINDOWS_1252.encode("R\u{e9}f. du client;Licence;SDA\r\n 4021 ; FPC172947 ;01 84 00 00 01\r\n40217;*;\r\n").0.iter());
        // A BOM followed by Windows-1252 bytes: not UTF-8, decoded as Windows-1252.
        let rows = read_bytes(&bytes).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].client_ref, "4021");
        assert_eq!(rows[0].licence, LicenceSelector::One("FPC172947".into()));
        assert_eq!(rows[0].sda.as_deref(), Some("01 84 00 00 01"));
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].licence, LicenceSelector::All);
    }

    #[test]
    fn a_report_is_read_back_and_an_unknown_status_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.csv");
        let header = "line,client_ref,service_ref,licence,sda,state,accountcode,status,confirmations,requests,detail";
        std::fs::write(
            &p,
            format!("{header}\n2,4021,SRV1,FPC1,,Connecté,123,reset,1,4,\n3,4021,SRV1,FPC2,,,,FAILED,1,4,x\n4,4021,,*,,,,unresolved,0,0,y\n"),
        )
        .unwrap();
        let input = read(&p).unwrap();
        assert!(matches!(input.kind, InputKind::Report { .. }));
        assert_eq!(input.left_out().len(), 1);
        assert_eq!(input.left_out()[0].accountcode, "123");
        assert_eq!(
            input.rows.len(),
            2,
            "failed (any case) and unresolved are retried"
        );
        for status in ["ok", "done", "", "RESET?"] {
            std::fs::write(&p, format!("{header}\n2,4021,SRV1,FPC1,,,,{status},1,4,\n")).unwrap();
            let e = read(&p).unwrap_err();
            assert_eq!(e.line, Some(2), "{status}");
            assert!(e.to_string().contains("unknown status"), "{e}");
        }
    }

    #[test]
    fn bad_inputs_name_line_and_column() {
        let e = read_bytes(b"client_ref,licence\n4021,FPC 1729\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert_eq!(e.column.as_ref().map(|c| c.0), Some(2));
        assert!(e.to_string().contains("malformed licence"), "{e}");
        let e = read_bytes(b"client_ref,licenses_typo\n4021,FPC1\n").unwrap_err();
        assert!(
            e.to_string().contains("unknown column 'licenses_typo'"),
            "{e}"
        );
        let e = read_bytes(b"client_ref\n4021\n").unwrap_err();
        assert!(e.to_string().contains("missing column 'licence'"), "{e}");
        let e = read_bytes(b"").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let mut long = b"client_ref,licence\n4021,".to_vec();
        long.extend(std::iter::repeat_n(b'A', 1 << 20));
        let e = read_bytes(&long).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().len() < 300, "the line is not echoed: {e}");
        let e = read_bytes(format!("client_ref,licence\n4021,{}\n", "B".repeat(500)).as_bytes())
            .unwrap_err();
        assert!(
            e.to_string().len() < 300,
            "the value is not echoed whole: {e}"
        );
        let e = read_bytes(b"client_ref,licence\n\"4021,FPC1\n4022,FPC2\n").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("never closed"), "{e}");
    }
}
