//! Tables: rows as maps from column name to cell, and the order minimega
//! displays rows in.
//!
//! The daemon sends a table's rows in whatever order it collected them (for
//! some commands that is Go's map order, different on every call); only its
//! `Rendered` text is sorted. minimega sorts on the first column, then the
//! second, and so on, comparing two cells as integers when both are
//! integers and as strings otherwise; with host annotation on, the host is
//! the first column.

use core::cmp::Ordering;

/// Go's `strconv.Atoi`: an optional sign and decimal digits, in `i64`'s range.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Compares two cells the way minimega orders them for display: as integers
/// when both are, as strings (byte by byte) otherwise. Integers that are
/// equal but written differently (`01`, `1`) are then ordered as strings, so
/// that only identical cells compare equal.
///
/// ```
/// use std::cmp::Ordering;
/// use vmwire_proto::minimega::compare_cells;
/// assert_eq!(compare_cells("9", "10"), Ordering::Less);
/// assert_eq!(compare_cells("vm9", "vm10"), Ordering::Greater);
/// ```
pub fn compare_cells(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (atoi(a), atoi(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

/// Compares two rows cell by cell with [`compare_cells`]; a row that is a
/// prefix of the other comes first.
pub fn compare_rows<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match compare_cells(x.as_ref(), y.as_ref()) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts `rows` into the order minimega displays them in (see
/// [`compare_rows`]).
///
/// Mixing integer and non-integer cells in one column can make minimega's
/// comparison inconsistent (`9 < 10`, `10 < 1x`, `1x < 9`); this sort is
/// in place, allocates nothing, and never panics whatever the cells are.
pub fn sort_rows<R: AsRef<[S]>, S: AsRef<str>>(rows: &mut [R]) {
    // Heapsort: O(n log n), and robust to an inconsistent order.
    let less = |rows: &[R], i: usize, j: usize| match (rows.get(i), rows.get(j)) {
        (Some(a), Some(b)) => compare_rows(a.as_ref(), b.as_ref()) == Ordering::Less,
        _ => false,
    };
    let sift_down = |rows: &mut [R], mut root: usize, end: usize| {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                break;
            }
            if child + 1 < end && less(rows, child, child + 1) {
                child += 1;
            }
            if !less(rows, root, child) {
                break;
            }
            rows.swap(root, child);
            root = child;
        }
    };
    let n = rows.len();
    for start in (0..n / 2).rev() {
        sift_down(rows, start, n);
    }
    for end in (1..n).rev() {
        rows.swap(0, end);
        sift_down(rows, 0, end);
    }
}

#[cfg(feature = "alloc")]
pub use owned::{Record, Table};

#[cfg(feature = "alloc")]
mod owned {
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::super::Response;

    /// A table, owned: column names and rows of cells.
    ///
    /// ```
    /// use vmwire_proto::minimega::Table;
    /// let mut t = Table::new(vec!["id".into(), "name".into()], vec![
    ///     vec!["10".into(), "b".into()],
    ///     vec!["9".into(), "a".into()],
    /// ]);
    /// t.sort();
    /// let first = t.records().next().unwrap();
    /// assert_eq!(first.get("name"), Some("a"));
    /// ```
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Table {
        /// Column names.
        pub header: Vec<String>,
        /// Rows, each a cell per column.
        pub rows: Vec<Vec<String>>,
    }

    impl Table {
        /// A table of `rows` under `header`.
        pub fn new(header: Vec<String>, rows: Vec<Vec<String>>) -> Self {
            Table { header, rows }
        }

        /// One response's table (empty if it has none).
        pub fn from_response(response: &Response<'_>) -> Self {
            let header = response.header().map(|h| h.map(|c| c.to_cow().into_owned()).collect()).unwrap_or_default();
            let rows = response.rows().map(|row| row.cells().map(|c| c.to_cow().into_owned()).collect()).collect();
            Table { header, rows }
        }

        /// The rows of every response that has a table, each prefixed with its
        /// host under a `host` column: the table minimega displays for a
        /// command answered by several hosts (take the header from the first
        /// response that has one, as minimega does).
        pub fn annotated<'a>(responses: impl IntoIterator<Item = Response<'a>>) -> Self {
            let mut table = Table::default();
            for response in responses {
                let Some(header) = response.header() else { continue };
                if table.header.is_empty() {
                    table.header.push("host".into());
                    table.header.extend(header.map(|c| c.to_cow().into_owned()));
                }
                let host = response.host().to_cow().into_owned();
                for row in response.rows() {
                    let mut cells = Vec::with_capacity(table.header.len());
                    cells.push(host.clone());
                    cells.extend(row.cells().map(|c| c.to_cow().into_owned()));
                    table.rows.push(cells);
                }
            }
            table
        }

        /// Sorts the rows into the order minimega displays them in.
        pub fn sort(&mut self) {
            super::sort_rows(&mut self.rows);
        }

        /// The table sorted for display.
        #[must_use]
        pub fn sorted(mut self) -> Self {
            self.sort();
            self
        }

        /// The position of column `name`.
        pub fn column(&self, name: &str) -> Option<usize> {
            self.header.iter().position(|h| h == name)
        }

        /// The rows as records: each cell reachable by its column's name.
        pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
            self.rows.iter().map(|cells| Record { header: &self.header, cells })
        }

        /// Whether the table has no rows.
        pub fn is_empty(&self) -> bool {
            self.rows.is_empty()
        }
    }

    /// One row of a [`Table`], as a map from column name to cell.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Record<'t> {
        header: &'t [String],
        cells: &'t [String],
    }

    impl<'t> Record<'t> {
        /// The cell under column `name`.
        pub fn get(&self, name: &str) -> Option<&'t str> {
            let i = self.header.iter().position(|h| h == name)?;
            self.cells.get(i).map(String::as_str)
        }

        /// `(column, cell)` pairs in column order.
        pub fn iter(&self) -> impl Iterator<Item = (&'t str, &'t str)> + 't {
            self.header.iter().map(String::as_str).zip(self.cells.iter().map(String::as_str))
        }

        /// The cells, in column order.
        pub fn cells(&self) -> &'t [String] {
            self.cells
        }

        /// The record as an owned map.
        pub fn to_map(&self) -> BTreeMap<String, String> {
            self.iter().map(|(k, v)| (k.into(), v.into())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_compare_as_minimega_does() {
        assert_eq!(compare_cells("2", "10"), Ordering::Less);
        assert_eq!(compare_cells("-3", "2"), Ordering::Less);
        assert_eq!(compare_cells("mmpeer", "minimega"), Ordering::Greater);
        assert_eq!(compare_cells("", "0"), Ordering::Less);
        assert_eq!(compare_cells("01", "1"), Ordering::Less);
        // Past i64: strings.
        assert_eq!(compare_cells("99999999999999999999", "100000000000000000000"), Ordering::Greater);
    }

    #[test]
    fn sort_is_total_even_when_minimega_is_not() {
        let mut rows = [["1x"], ["10"], ["9"], ["1x"], ["0"], ["vm2"], ["vm10"]];
        sort_rows(&mut rows);
        // A permutation, whatever the order.
        let mut seen = rows.map(|r| r[0]);
        seen.sort();
        assert_eq!(seen, ["0", "10", "1x", "1x", "9", "vm10", "vm2"]);
        let mut ints = [["10"], ["9"], ["100"], ["-1"]];
        sort_rows(&mut ints);
        assert_eq!(ints, [["-1"], ["9"], ["10"], ["100"]]);
    }
}
