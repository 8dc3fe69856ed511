//! The two backends behind [`Store`]: one SQL text per query for both, written in the common
//! dialect (`?N` placeholders, `ON CONFLICT`, `RETURNING`, `CAST`), values as [`Value`] and rows as
//! [`Row`], so each table's file holds its queries once. Only lesson search and the migrations
//! differ per backend.
//!
//! Postgres goes through the synchronous `postgres` client, which runs a runtime of its own: each
//! call runs on a short-lived thread of its own, since activities call the store from async code
//! and a runtime cannot be entered from inside another.

use std::cell::RefCell;

use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::StoreError;
use super::postgres::PooledClient;

/// A value going into or coming out of a query.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(v.into())
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(v.into())
    }
}
impl From<u64> for Value {
    /// Counts and ids: past i64::MAX they saturate rather than wrap negative.
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}
impl From<bool> for Value {
    /// Flags are 0/1 integers in both schemas.
    fn from(v: bool) -> Value {
        Value::Int(v.into())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The arguments of a query, each converted to a [`Value`].
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::store::db::Value::from($v)),*] };
}
pub(super) use args;

/// One result row (and the store it came from, for errors).
#[derive(Debug, Clone)]
pub(super) struct Row(Vec<Value>, String);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::Data {
            store: self.1.clone(),
            detail: format!("a query returned no column {i}"),
        })
    }

    fn mismatch(&self, i: usize, wanted: &str) -> StoreError {
        StoreError::Data {
            store: self.1.clone(),
            detail: format!("column {i} holds {:?}, not {wanted}", self.0.get(i)),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// A count or id: never negative.
    pub fn count(&self, i: usize) -> Result<u64, StoreError> {
        Ok(self.int(i)?.max(0) as u64)
    }

    pub fn small(&self, i: usize) -> Result<u32, StoreError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| self.mismatch(i, "a number from 0 to 4294967295"))
    }

    pub fn real(&self, i: usize) -> Result<f64, StoreError> {
        match self.at(i)? {
            Value::Real(v) => Ok(*v),
            Value::Int(v) => Ok(*v as f64),
            _ => Err(self.mismatch(i, "a number")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub fn flag(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }

    /// A JSON list of strings; unreadable JSON reads as empty (a row is never lost to it).
    pub fn list(&self, i: usize) -> Result<Vec<String>, StoreError> {
        Ok(serde_json::from_str(&self.text(i)?).unwrap_or_default())
    }
}

/// The open connection of either backend.
pub(super) enum Backend {
    Sqlite(rusqlite::Connection),
    /// Boxed: the client is several times the size of a SQLite connection.
    Postgres(Box<RefCell<PooledClient>>),
}

/// A connection and how errors name its store (a path, or a URL without its password).
pub(super) struct Conn {
    pub backend: Backend,
    pub shown: String,
}

impl Conn {
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    pub fn sqlite_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.shown.clone(),
            source,
        }
    }

    pub fn postgres_err(&self, source: postgres::Error) -> StoreError {
        StoreError::Postgres {
            url: self.shown.clone(),
            source,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(c) => c
                .execute(sql, rusqlite::params_from_iter(args.iter()))
                .map(|n| n as u64)
                .map_err(|e| self.sqlite_err(e)),
            Backend::Postgres(c) => {
                let sql = dollar_placeholders(sql);
                self.on_postgres(c, move |client| {
                    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
                    client.execute(sql.as_str(), &params)
                })
            }
        }
    }

    /// Runs a query; every row it returned.
    pub fn query(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        match &self.backend {
            Backend::Sqlite(c) => {
                let sqlite = |e| self.sqlite_err(e);
                let mut stmt = c.prepare(sql).map_err(sqlite)?;
                let width = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        (0..width).map(|i| r.get_ref(i).map(Value::from)).collect()
                    })
                    .map_err(sqlite)?;
                let rows = rows.collect::<Result<Vec<Vec<Value>>, _>>().map_err(sqlite)?;
                Ok(rows.into_iter().map(|r| Row(r, self.shown.clone())).collect())
            }
            Backend::Postgres(c) => {
                let sql = dollar_placeholders(sql);
                let rows = self.on_postgres(c, move |client| {
                    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
                    let rows = client.query(sql.as_str(), &params)?;
                    rows.iter()
                        .map(|r| (0..r.len()).map(|i| r.try_get::<_, Value>(i)).collect())
                        .collect::<Result<Vec<Vec<Value>>, _>>()
                })?;
                Ok(rows.into_iter().map(|r| Row(r, self.shown.clone())).collect())
            }
        }
    }

    /// The first row a query returned, if any.
    pub fn query_one(&self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Runs statements without arguments (migrations, BEGIN/COMMIT).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(c) => c.execute_batch(sql).map_err(|e| self.sqlite_err(e)),
            Backend::Postgres(c) => self.on_postgres(c, move |client| client.batch_execute(sql)),
        }
    }

    /// Runs `body` in a transaction that `begin` opens, committed when it returns `Ok(true)`,
    /// rolled back otherwise.
    pub fn transaction<T>(
        &self,
        begin: &str,
        body: impl FnOnce() -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        self.batch(begin)?;
        match body() {
            Ok((value, true)) => {
                self.batch("COMMIT")?;
                Ok(value)
            }
            Ok((value, false)) => {
                self.batch("ROLLBACK")?;
                Ok(value)
            }
            Err(e) => {
                // The error that matters is the first; a failed rollback ends with the connection.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl Conn {
    /// Runs `call` with the pooled Postgres client, on a thread of its own (see the module's
    /// comment), its failure named with this store.
    fn on_postgres<T: Send>(
        &self,
        pooled: &RefCell<PooledClient>,
        call: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        let mut pooled = pooled.borrow_mut();
        let client = pooled.client().ok_or_else(|| self.returned())?;
        on_own_thread(move || call(client)).map_err(|e| self.fault(e))
    }

    fn returned(&self) -> StoreError {
        StoreError::Data {
            store: self.shown.clone(),
            detail: "the connection was already returned to the pool".to_string(),
        }
    }

    fn fault(&self, e: Fault) -> StoreError {
        match e {
            Fault::Postgres(e) => self.postgres_err(e),
            Fault::Panicked => StoreError::Data {
                store: self.shown.clone(),
                detail: "the Postgres client's thread panicked".to_string(),
            },
        }
    }
}

/// What a call on the Postgres client's thread can end with.
pub(super) enum Fault {
    Postgres(postgres::Error),
    Panicked,
}

/// Runs a Postgres call on a thread of its own (see the module's comment).
pub(super) fn on_own_thread<T: Send>(call: impl FnOnce() -> Result<T, postgres::Error> + Send) -> Result<T, Fault> {
    std::thread::scope(|s| match s.spawn(call).join() {
        Ok(result) => result.map_err(Fault::Postgres),
        Err(_) => Err(Fault::Panicked),
    })
}

/// `?1` -> `$1`: the one placeholder spelling that differs. The queries hold no `?` elsewhere.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for Value {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Value {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        }
    }
}

const TEXT_TYPES: [Type; 4] = [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME];

fn is_int(ty: &Type) -> bool {
    [Type::INT2, Type::INT4, Type::INT8].contains(ty)
}

impl ToSql for Value {
    /// Converts to the type the server inferred for the parameter: the schema's BIGINT, DOUBLE
    /// PRECISION and TEXT columns, and whatever a comparison or LIMIT asks for.
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) if *ty == Type::INT8 => v.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Value::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            Value::Int(v) if *ty == Type::BOOL => (*v != 0).to_sql(ty, out),
            Value::Real(v) if *ty == Type::FLOAT8 => v.to_sql(ty, out),
            Value::Real(v) if *ty == Type::FLOAT4 => (*v as f32).to_sql(ty, out),
            Value::Text(v) if TEXT_TYPES.contains(ty) => v.as_str().to_sql(ty, out),
            // A number compared with text (or the like): its text.
            Value::Int(v) if TEXT_TYPES.contains(ty) => v.to_string().as_str().to_sql(ty, out),
            other => Err(format!("cannot send {other:?} as a Postgres {ty}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        is_int(ty) || [Type::FLOAT4, Type::FLOAT8, Type::BOOL].contains(ty) || TEXT_TYPES.contains(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        <Value as ToSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_placeholders_become_dollars_and_nothing_else_changes() {
        assert_eq!(
            super::dollar_placeholders("SELECT ?1, '?', ?12 WHERE x = ?2"),
            "SELECT $1, '?', $12 WHERE x = $2"
        );
    }
}
