//! Phone numbers (SDA) as the portal writes them: `01 84 78 78 80`,
//! `01.84.78.78.80`, `0184787880` and `+33184787880` are one number.

/// The canonical form of a French number: national digits, `0` first.
/// Anything that is not a plausible number is kept as its digits.
pub fn canonical(s: &str) -> String {
    let trimmed = s.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if let Some(national) = digits
        .strip_prefix("33")
        .filter(|_| trimmed.starts_with('+'))
    {
        format!("0{national}")
    } else if let Some(national) = digits.strip_prefix("0033") {
        format!("0{national}")
    } else {
        digits
    }
}

/// Whether two written numbers are the same number (two empty ones are).
pub fn same_number(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

/// Whether `input` is `portal`'s number but for its leading 0: what a
/// spreadsheet leaves of a number it read as a number.
pub fn lost_leading_zero(input: &str, portal: &str) -> bool {
    let input = canonical(input);
    !input.is_empty() && !input.starts_with('0') && format!("0{input}") == canonical(portal)
}

/// The number at the start of `text` (digits, spaces, dots, dashes, a leading
/// `+`), as written; empty when the text does not start with a number.
pub fn leading_number(text: &str) -> String {
    let end = text
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '\u{a0}') || (c == '+' && i == 0))
        })
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let number = text[..end].trim();
    if number.chars().any(|c| c.is_ascii_digit()) {
        number.to_string()
    } else {
        String::new()
    }
}

/// Whether a CSV value looks like a phone number.
pub fn is_plausible(s: &str) -> bool {
    let digits = canonical(s);
    (8..=15).contains(&digits.len())
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '+' | '(' | ')'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_a_spreadsheet_cut_is_told_apart() {
        assert!(lost_leading_zero("184051153", "01 84 05 11 53"));
        assert!(!lost_leading_zero("0184051153", "01 84 05 11 53"));
        assert!(!lost_leading_zero("284051153", "01 84 05 11 53"));
        assert!(!lost_leading_zero("", "0"));
    }

    #[test]
    fn written_forms_of_one_number_are_the_same() {
        assert!(same_number("01 84 78 78 80", "0184787880"));
        assert!(same_number("+33184787880", "01.84.78.78.80"));
        assert!(same_number("0033 1 84 78 78 80", "0184787880"));
        assert!(same_number("", ""));
        assert!(!same_number("0184787880", "0184787881"));
        assert!(!same_number("", "0184787881"));
    }

    #[test]
    fn the_number_before_the_warning_is_read() {
        assert_eq!(
            leading_number("01 84 78 78 80 Si vous validez"),
            "01 84 78 78 80"
        );
        assert_eq!(leading_number("+33184787880 Si"), "+33184787880");
        assert_eq!(leading_number("Si vous validez 2 fois"), "");
    }
}
