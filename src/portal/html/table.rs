//! Tables found by their header cells, rows read as cells of text and links.

use super::*;

/// Table contents keyed by the wanted headers.
#[derive(Debug, Clone)]
pub struct Cell {
    pub text: String,
    pub links: Vec<Link>,
}

#[derive(Debug, Clone)]
pub struct Table {
    /// One entry per data row, one cell per wanted header, in the order
    /// asked (the optional ones after the others, empty where absent).
    pub rows: Vec<Vec<Cell>>,
    /// For each optional header, whether the table has it.
    pub optional: Vec<bool>,
}

/// Finds the first table whose header cells include every one of `headers`,
/// in any order, and reads its data rows.
pub fn find_table(doc: &Html, base: &Url, headers: &[&str]) -> Option<Table> {
    find_table_with(doc, base, headers, &[])
}

/// Like `find_table`, with `optional` headers read where the table has them.
pub fn find_table_with(
    doc: &Html,
    base: &Url,
    headers: &[&str],
    optional: &[&str],
) -> Option<Table> {
    for table in doc.select(&TABLES) {
        // Rows of this table, not of tables nested in it.
        let rows: Vec<ElementRef> = table
            .select(&ROWS)
            .filter(|r| {
                r.ancestors()
                    .filter_map(ElementRef::wrap)
                    .find(|a| a.value().name() == "table")
                    == Some(table)
            })
            .collect();
        let Some(head) = rows.first() else { continue };
        let head_cells: Vec<String> = cells_of(*head).map(text_of).collect();
        let Some(columns) = headers
            .iter()
            .map(|h| head_cells.iter().position(|c| is_label(c, h)))
            .collect::<Option<Vec<usize>>>()
        else {
            continue;
        };
        let extra: Vec<Option<usize>> = optional
            .iter()
            .map(|h| head_cells.iter().position(|c| is_label(c, h)))
            .collect();
        let cell = |e: ElementRef| Cell {
            text: text_of(e),
            links: e
                .select(&ANCHORS)
                .filter_map(|a| link_of(a, base))
                .collect(),
        };
        let rows = rows[1..]
            .iter()
            .map(|r| cells_of(*r).collect::<Vec<_>>())
            .filter(|cells| columns.iter().all(|&c| c < cells.len()))
            .map(|cells| {
                let mut row: Vec<Cell> = columns.iter().map(|&c| cell(cells[c])).collect();
                row.extend(extra.iter().map(|c| match c {
                    Some(c) if *c < cells.len() => cell(cells[*c]),
                    _ => Cell {
                        text: String::new(),
                        links: Vec::new(),
                    },
                }));
                row
            })
            .collect();
        return Some(Table {
            rows,
            optional: extra.iter().map(Option::is_some).collect(),
        });
    }
    None
}

pub(super) fn cells_of(row: ElementRef<'_>) -> impl Iterator<Item = ElementRef<'_>> {
    row.child_elements()
        .filter(|c| matches!(c.value().name(), "td" | "th"))
}
