//! The two ways sip-rotate writes CSV. `Rfc4180` is for scripts: comma,
//! UTF-8 without BOM, every value byte-exact (but in a report, see
//! `FormulaCells`). `Excel` is for people who open the file by double-click in a
//! French spreadsheet: `;`, a UTF-8 BOM so that accents survive, CRLF, and
//! every cell that a spreadsheet would run as a formula written as text.

use std::borrow::Cow;

/// How a CSV file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    Rfc4180,
    Excel,
}

/// Whether cells that look like formulas are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormulaCells {
    /// Byte-exact: for files that scripts read (a decrypted CSV).
    Exact,
    /// As text: for files people open (a report, anything in Excel).
    AsText,
}

impl Dialect {
    pub fn separator(self) -> u8 {
        match self {
            Dialect::Rfc4180 => b',',
            Dialect::Excel => b';',
        }
    }

    /// What starts the file.
    pub fn preamble(self) -> &'static [u8] {
        match self {
            Dialect::Rfc4180 => b"",
            Dialect::Excel => b"\xEF\xBB\xBF",
        }
    }

    pub fn line_end(self) -> &'static [u8] {
        match self {
            Dialect::Rfc4180 => b"\n",
            Dialect::Excel => b"\r\n",
        }
    }

    /// The guard a file of this dialect gets when it would be exact otherwise.
    pub fn guard(self, wanted: FormulaCells) -> FormulaCells {
        match self {
            Dialect::Excel => FormulaCells::AsText,
            Dialect::Rfc4180 => wanted,
        }
    }
}

/// Whether a spreadsheet would run this cell as a formula.
fn looks_like_a_formula(value: &str) -> bool {
    value.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// The cell as written: a formula-looking value becomes `="value"`, which a
/// spreadsheet shows as that very text (`+33184787880` stays that number as
/// written, `=1+1` shows as `=1+1`), then quoted where CSV needs it.
pub fn cell(value: &str, dialect: Dialect, guard: FormulaCells) -> Cow<'_, str> {
    let value: Cow<str> = if guard == FormulaCells::AsText && looks_like_a_formula(value) {
        Cow::Owned(format!("=\"{}\"", value.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(value)
    };
    let separator = dialect.separator() as char;
    if value.contains([separator, '"', '\n', '\r'])
        || value.starts_with(' ')
        || value.ends_with(' ')
    {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        value
    }
}

/// Appends one row to `out`.
pub fn push_row(out: &mut Vec<u8>, fields: &[&str], dialect: Dialect, guard: FormulaCells) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(dialect.separator());
        }
        out.extend_from_slice(cell(f, dialect, guard).as_bytes());
    }
    out.extend_from_slice(dialect.line_end());
}

/// The text a guarded cell stands for: `="value"` is `value`. Anything else
/// is itself.
pub fn unguard(value: &str) -> Cow<'_, str> {
    match value.strip_prefix("=\"").and_then(|v| v.strip_suffix('"')) {
        Some(inner) => Cow::Owned(inner.replace("\"\"", "\"")),
        None => Cow::Borrowed(value),
    }
}

/// Splits RFC 4180 text (comma, quotes doubled inside quoted fields) into
/// rows of fields.
pub fn split_rfc4180(text: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut rows = Vec::new();
    let mut row: Vec<Vec<u8>> = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if quoted {
            if b == b'"' {
                if text.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    quoted = false;
                }
            } else {
                field.push(b);
            }
        } else {
            match b {
                b'"' => quoted = true,
                b',' => row.push(std::mem::take(&mut field)),
                b'\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                b'\r' if text.get(i + 1) == Some(&b'\n') => {}
                _ => field.push(b),
            }
        }
        i += 1;
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Rewrites RFC 4180 text written to it into the Excel dialect, row by row,
/// as it comes: the BOM first, then each complete row. Buffers that held a
/// row are wiped: the rows may hold passwords.
pub struct ExcelRows<W: std::io::Write> {
    out: W,
    row: zeroize::Zeroizing<Vec<u8>>,
    quoted: bool,
    started: bool,
}

impl<W: std::io::Write> ExcelRows<W> {
    pub fn new(out: W) -> ExcelRows<W> {
        ExcelRows {
            out,
            row: zeroize::Zeroizing::new(Vec::new()),
            quoted: false,
            started: false,
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        for mut fields in split_rfc4180(&self.row) {
            let mut line = zeroize::Zeroizing::new(Vec::new());
            {
                let texts: Vec<Cow<str>> =
                    fields.iter().map(|f| String::from_utf8_lossy(f)).collect();
                let refs: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
                push_row(&mut line, &refs, Dialect::Excel, FormulaCells::AsText);
            }
            fields.iter_mut().for_each(zeroize::Zeroize::zeroize);
            self.out.write_all(&line)?;
        }
        zeroize::Zeroize::zeroize(&mut *self.row);
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for ExcelRows<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.started {
            self.out.write_all(Dialect::Excel.preamble())?;
            self.started = true;
        }
        for &b in buf {
            self.row.push(b);
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.emit()?,
                _ => {}
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.row.is_empty() {
            self.emit()?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_text_where_people_read_and_exact_where_scripts_do() {
        use Dialect::*;
        use FormulaCells::*;
        assert_eq!(cell("=1+1", Rfc4180, Exact), "=1+1");
        assert_eq!(cell("=1+1", Rfc4180, AsText), "\"=\"\"=1+1\"\"\"");
        assert_eq!(
            cell("+33184787880", Excel, AsText),
            "\"=\"\"+33184787880\"\"\""
        );
        assert_eq!(cell("a;b", Excel, AsText), "\"a;b\"");
        assert_eq!(cell("a;b", Rfc4180, Exact), "a;b");
        assert_eq!(cell("Hôtel, Lyon", Rfc4180, Exact), "\"Hôtel, Lyon\"");
        assert_eq!(unguard("=\"+33184787880\""), "+33184787880");
        assert_eq!(unguard("=\"say \"\"hi\"\"\""), "say \"hi\"");
        assert_eq!(unguard("4021"), "4021");
        let mut excel = ExcelRows::new(Vec::new());
        std::io::Write::write_all(&mut excel, b"name,sda\nH\xc3\xb4tel,+33184787880\n").unwrap();
        std::io::Write::flush(&mut excel).unwrap();
        assert_eq!(
            String::from_utf8(excel.out).unwrap(),
            "\u{feff}name;sda\r\nHôtel;\"=\"\"+33184787880\"\"\"\r\n"
        );
        let rows = split_rfc4180(b"a,\"b,\"\"c\"\"\"\r\nd,\n");
        assert_eq!(
            rows,
            [
                vec![b"a".to_vec(), b"b,\"c\"".to_vec()],
                vec![b"d".to_vec(), b"".to_vec()]
            ]
        );
    }
}
