//! One way to run the money statements on either engine. The statements of a request's hold
//! and charge (see `spend`) are written once against [`Sql`]; Postgres runs them through sqlx,
//! and the SQLite writer through rusqlite on its own thread, where a statement is a function
//! call rather than a round trip to sqlx's connection thread (one writer applies every
//! statement of every request in turn, so that round trip was the gateway's ceiling).
//!
//! Parameters are `$1`, `$2`, … on both engines, bound from one slice of [`Arg`]s.
use super::{LedgerError, Result};
use futures_util::FutureExt;
use sqlx::{any::AnyRow, AnyConnection, Row as _};
use std::future::Future;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(value: Option<i64>) -> Self {
        Arg::Int(value)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(Some(value))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(value: Option<&'a str>) -> Self {
        Arg::Text(value)
    }
}

/// The `[Arg]` slice for a statement: `args![a, b]`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { &[$($crate::sql::Arg::from($arg)),*] };
}
pub(super) use args;

/// A row a statement returned, read by column position.
pub(super) enum Row {
    Any(AnyRow),
    Sqlite(Vec<rusqlite::types::Value>),
}

impl Row {
    pub(super) fn int(&self, column: usize) -> Result<i64> {
        self.maybe_int(column)?
            .ok_or_else(|| LedgerError::Column(column, "a NULL where an integer belongs"))
    }

    pub(super) fn maybe_int(&self, column: usize) -> Result<Option<i64>> {
        use rusqlite::types::Value;
        match self {
            Row::Any(row) => Ok(row.try_get(column)?),
            Row::Sqlite(values) => match values.get(column) {
                Some(Value::Integer(value)) => Ok(Some(*value)),
                Some(Value::Null) => Ok(None),
                _ => Err(LedgerError::Column(column, "not an integer")),
            },
        }
    }

    pub(super) fn text(&self, column: usize) -> Result<String> {
        self.maybe_text(column)?
            .ok_or_else(|| LedgerError::Column(column, "a NULL where text belongs"))
    }

    pub(super) fn maybe_text(&self, column: usize) -> Result<Option<String>> {
        use rusqlite::types::Value;
        match self {
            Row::Any(row) => Ok(row.try_get(column)?),
            Row::Sqlite(values) => match values.get(column) {
                Some(Value::Text(value)) => Ok(Some(value.clone())),
                Some(Value::Null) => Ok(None),
                _ => Err(LedgerError::Column(column, "not text")),
            },
        }
    }
}

/// A connection (inside a transaction its caller owns) that runs the ledger's statements.
pub(super) trait Sql: Send {
    /// Runs a statement that returns no rows; how many rows it changed.
    fn execute(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The first row a statement returns, if any.
    fn fetch_row(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Row>>> + Send;

    /// The first column of the first row, if any row (a `RETURNING n` or a `SELECT n`).
    fn fetch_int(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<i64>>> + Send {
        let row = self.fetch_row(sql, args);
        async move { row.await?.map(|row| row.int(0)).transpose() }
    }
}

fn bind_any<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for arg in args {
        query = match *arg {
            Arg::Int(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
        };
    }
    query
}

impl Sql for AnyConnection {
    async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        let query = bind_any(sqlx::query(sql), args);
        Ok(query.execute(&mut *self).await?.rows_affected())
    }

    async fn fetch_row(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        let query = bind_any(sqlx::query(sql), args);
        Ok(query.fetch_optional(&mut *self).await?.map(Row::Any))
    }
}

impl Sql for rusqlite::Connection {
    fn execute(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<u64>> + Send {
        let changed = prepare(self, sql, args).and_then(|mut statement| {
            let changed = statement.raw_execute()?;
            Ok(changed as u64)
        });
        std::future::ready(changed.map_err(LedgerError::from))
    }

    fn fetch_row(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Row>>> + Send {
        let row = prepare(self, sql, args).and_then(|mut statement| {
            let columns = statement.column_count();
            let mut rows = statement.raw_query();
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let values = (0..columns)
                .map(|column| row.get::<_, rusqlite::types::Value>(column))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A `DELETE … RETURNING` has made its changes at the first step; the rest of
            // its rows are not read.
            Ok(Some(Row::Sqlite(values)))
        });
        std::future::ready(row.map_err(LedgerError::from))
    }
}

/// The cached statement for `sql` with `$n` bound to `args[n - 1]` (SQLite numbers `$n`
/// parameters by first appearance, so each is looked up by its name).
fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg<'_>],
) -> rusqlite::Result<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(sql)?;
    for index in 1..=statement.parameter_count() {
        let arg = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|number| number.parse::<usize>().ok())
            .and_then(|number| args.get(number.checked_sub(1)?))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                statement.parameter_count(),
                args.len(),
            ))?;
        match *arg {
            Arg::Int(value) => statement.raw_bind_parameter(index, value)?,
            Arg::Text(value) => statement.raw_bind_parameter(index, value)?,
        }
    }
    Ok(statement)
}

/// Runs a statement future on the writer's thread: on SQLite it is already done (rusqlite
/// answers when called), so it is polled once.
pub(super) fn run_now<T>(statements: impl Future<Output = Result<T>>) -> Result<T> {
    statements
        .now_or_never()
        .unwrap_or(Err(LedgerError::WriterStopped(
            "a SQLite statement did not finish when called",
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_binds_each_dollar_parameter_by_its_number() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        // `$2` appears first: SQLite numbers it 1, and it must still take the second arg.
        let row = run_now(conn.fetch_row(
            "SELECT $2 - $1, $3, $1 + $1, $4",
            args![1, 10, "text", None::<&str>],
        ))
        .unwrap()
        .unwrap();
        assert_eq!(row.int(0).unwrap(), 9);
        assert_eq!(row.text(1).unwrap(), "text");
        assert_eq!(row.int(2).unwrap(), 2);
        assert_eq!(row.maybe_text(3).unwrap(), None);
        assert!(matches!(row.int(3), Err(LedgerError::Column(3, _))));
    }

    #[test]
    fn sqlite_execute_counts_changed_rows_and_refuses_missing_args() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER)").unwrap();
        let insert = "INSERT INTO t (a) VALUES ($1), ($1 + 1)";
        assert_eq!(
            run_now(Sql::execute(&mut conn, insert, args![5])).unwrap(),
            2
        );
        let update = "UPDATE t SET a = a + $1 WHERE a >= $2";
        assert_eq!(
            run_now(Sql::execute(&mut conn, update, args![10, 6])).unwrap(),
            1
        );
        assert_eq!(
            run_now(conn.fetch_int("SELECT SUM(a) FROM t", args![])).unwrap(),
            Some(21)
        );
        assert!(matches!(
            run_now(Sql::execute(&mut conn, update, args![10])),
            Err(LedgerError::Sqlite(_))
        ));
        assert_eq!(
            run_now(conn.fetch_int("SELECT a FROM t WHERE a > $1", args![100])).unwrap(),
            None
        );
    }
}
