//! Multi-row inserts that leave out rows already there: the way
//! projections write a batch's rows in few statements, on SQLite and
//! PostgreSQL.
//!
//! The statement names no conflict target: a row that would break any
//! unique key of its table is left out, so a table may change its keys (as
//! the analytics tables did, from `(id, sequence)` to `sequence`) without
//! its writers changing, and tables of both shapes take the same statements.
//!
//! On PostgreSQL it is `INSERT … ON CONFLICT DO NOTHING`. On SQLite it is
//! `INSERT OR IGNORE …`, which leaves out the same rows, because SQLite
//! keeps a statement journal (a copy of every page the statement changes, to
//! undo its own rows) for a multi-row statement that may abort, and `ON
//! CONFLICT DO NOTHING` still may on a `NOT NULL` or `CHECK` constraint:
//! that journal was 4% of an analytics rebuild's CPU, and the rebuild ran
//! about 6% faster without it (`docs/operations.md`). `OR IGNORE` would
//! also leave out a row that breaks `NOT NULL` or `CHECK`; none can here:
//! a [`Val`] is never NULL, and the tables written this way have no `CHECK`
//! (`tests/tests/insert.rs` fails if one gets one).

use sqlx::AnyConnection;

/// A column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    I(i64),
    S(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I(v)
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::S(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::S(v.to_string())
    }
}

/// Rows for one table: its name and columns (rows whose key is already
/// there are left as they are, so a row applies once).
#[derive(Debug, Clone)]
pub struct Insert {
    table: String,
    columns: &'static [&'static str],
    /// One value per column each, in the columns' order.
    pub rows: Vec<Vec<Val>>,
}

/// Rows per `INSERT` (with up to 300 columns, under SQLite's and
/// PostgreSQL's bind limits).
const CHUNK: usize = 100;

/// Rows in the next statement when `left` remain: [`CHUNK`], else the
/// largest power of two not above `left`. So a table's statements come in
/// at most eight sizes, and each size's SQL is prepared once and found in
/// the connection's statement cache after (one statement per row count
/// would be a new SQL text for nearly every batch: parsed and planned
/// again, and pushing the others out of the cache). For every multi-row
/// statement a projection writes, not only [`Insert`]'s.
pub fn chunk_size(left: usize) -> usize {
    if left >= CHUNK {
        CHUNK
    } else {
        1 << left.ilog2()
    }
}

/// `items` in pieces of [`chunk_size`], for multi-row statements whose SQL
/// is then one of a few texts, each prepared once.
pub fn chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if items.is_empty() {
            return None;
        }
        let (head, rest) = items.split_at(chunk_size(items.len()));
        items = rest;
        Some(head)
    })
}

/// `n` copies of `row` (a parenthesised list of values whose parameters
/// are `?`), comma-separated, for a multi-row `VALUES`: SQLite binds `?`
/// in order (numbered parameters are looked up by name, one walk of the
/// statement's names per parameter); on PostgreSQL they become `$1`, `$2`,
/// ... across the copies. `row` must hold no other `?`.
pub fn values_sql(sqlite: bool, row: &str, n: usize) -> String {
    let mut out = String::with_capacity((row.len() + 8) * n);
    let mut k = 0;
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        if sqlite {
            out.push_str(row);
            continue;
        }
        for ch in row.chars() {
            if ch == '?' {
                k += 1;
                out.push('$');
                out.push_str(&k.to_string());
            } else {
                out.push(ch);
            }
        }
    }
    out
}

impl Insert {
    /// Only constant names go into the SQL: `table` and `columns` must not
    /// come from input.
    pub fn new(table: impl Into<String>, columns: &'static [&'static str]) -> Self {
        Insert {
            table: table.into(),
            columns,
            rows: Vec::new(),
        }
    }

    /// Writes the rows, [`CHUNK`] per statement, leaving out each row that
    /// would break a unique key (one already there, or an earlier row of the
    /// same call).
    pub async fn write(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let n = self.columns.len();
        let sqlite = conn.backend_name() == "SQLite";
        let row = format!("({})", vec!["?"; n].join(", "));
        let mut left = self.rows.len();
        let mut rows = self.rows.into_iter();
        while left > 0 {
            let size = chunk_size(left);
            left -= size;
            let chunk: Vec<Vec<Val>> = rows.by_ref().take(size).collect();
            // SQLite: no statement journal (see the module's header).
            let mut sql = format!(
                "INSERT {}INTO {} ({}) VALUES {}",
                if sqlite { "OR IGNORE " } else { "" },
                self.table,
                self.columns.join(", "),
                values_sql(sqlite, &row, chunk.len())
            );
            if !sqlite {
                sql.push_str(" ON CONFLICT DO NOTHING");
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                debug_assert_eq!(
                    row.len(),
                    n,
                    "a row of {} has one value per column",
                    self.table
                );
                for v in row {
                    q = match v {
                        Val::I(i) => q.bind(i),
                        Val::S(s) => q.bind(s),
                    };
                }
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbered_across_rows_on_postgres_only() {
        assert_eq!(
            values_sql(true, "(?, 'x', ?)", 2),
            "(?, 'x', ?), (?, 'x', ?)"
        );
        assert_eq!(
            values_sql(false, "(?, 'x', ?)", 2),
            "($1, 'x', $2), ($3, 'x', $4)"
        );
        assert_eq!(values_sql(false, "(?)", 1), "($1)");
    }

    #[test]
    fn statements_come_in_a_few_sizes_and_take_every_row() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 1..=1000 {
            let (mut left, mut taken) = (n, 0);
            while left > 0 {
                let size = chunk_size(left);
                assert!(size >= 1 && size <= left);
                sizes.insert(size);
                left -= size;
                taken += 1;
            }
            // Whole chunks, then one statement per bit of the remainder.
            assert_eq!(taken, n / CHUNK + (n % CHUNK).count_ones() as usize);
            // `chunks` cuts the same pieces, in order, covering every item.
            let items: Vec<usize> = (0..n).collect();
            let pieces: Vec<&[usize]> = chunks(&items).collect();
            assert_eq!(pieces.len(), taken);
            assert_eq!(pieces.concat(), items);
        }
        assert_eq!(
            sizes.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64, CHUNK]
        );
    }
}
