//! Rows for `COPY ... FROM STDIN (FORMAT binary)`: the fastest way to append many
//! rows. Only the types the fact tables use are encoded (text, bigint, boolean,
//! double precision, timestamptz); values are encoded exactly as sqlx encodes
//! the same Rust values as parameters.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{pg_micros, poison};
use crate::error::ApplyError;

/// The binary COPY stream of one table.
pub(crate) struct CopyRows {
    buf: Vec<u8>,
    rows: usize,
}

impl CopyRows {
    pub(crate) fn new() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Self { buf, rows: 0 }
    }

    /// Starts a row of `fields` values.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
    }

    fn field(&mut self, bytes: &[u8]) {
        // A field is at most a text of a few thousand characters.
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    pub(crate) fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }

    pub(crate) fn bigint(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    pub(crate) fn boolean(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }

    pub(crate) fn float8(&mut self, v: f64) {
        self.field(&v.to_bits().to_be_bytes());
    }

    /// A timestamptz; one PostgreSQL refuses is poison.
    pub(crate) fn timestamptz(&mut self, t: &DateTime<Utc>) -> Result<(), ApplyError> {
        let micros = pg_micros(t).ok_or_else(|| poison(format!("timestamp {t} out of range")))?;
        self.field(&micros.to_be_bytes());
        Ok(())
    }

    /// Sends the rows with `copy` (a `COPY table (columns) FROM STDIN (FORMAT
    /// binary)` statement); nothing when there are none.
    pub(crate) async fn send(
        mut self,
        conn: &mut PgConnection,
        copy: &str,
    ) -> Result<(), ApplyError> {
        if self.rows == 0 {
            return Ok(());
        }
        self.buf.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
        let mut stream = conn.copy_in_raw(copy).await?;
        stream.send(self.buf).await?;
        stream.finish().await?;
        Ok(())
    }
}
