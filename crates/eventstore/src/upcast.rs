//! Upcasting: old event schema versions are brought up to date when loaded.
//!
//! The log is immutable, so when an event's schema changes we bump its
//! `schema_version` and register an [`Upcaster`] from the old version to the next.
//! [`Upcasters`] chains them: an event stored at v1 passes v1→v2, then v2→v3, …
//! until no upcaster matches, so every reader sees the current shape.

use serde_json::Value;

/// Turns one event type's payload from `source_version` to `source_version + 1`.
pub trait Upcaster: Send + Sync {
    fn event_type(&self) -> &str;
    fn source_version(&self) -> i32;
    fn upcast(&self, payload: Value) -> Result<Value, String>;
}

/// An upcaster made of a plain function.
pub struct FnUpcaster<F> {
    event_type: String,
    source_version: i32,
    f: F,
}

impl<F> FnUpcaster<F>
where
    F: Fn(Value) -> Result<Value, String> + Send + Sync,
{
    pub fn new(event_type: impl Into<String>, source_version: i32, f: F) -> Self {
        Self {
            event_type: event_type.into(),
            source_version,
            f,
        }
    }
}

impl<F> Upcaster for FnUpcaster<F>
where
    F: Fn(Value) -> Result<Value, String> + Send + Sync,
{
    fn event_type(&self) -> &str {
        &self.event_type
    }
    fn source_version(&self) -> i32 {
        self.source_version
    }
    fn upcast(&self, payload: Value) -> Result<Value, String> {
        (self.f)(payload)
    }
}

/// The set of upcasters a store applies on every read.
#[derive(Default)]
pub struct Upcasters {
    upcasters: Vec<Box<dyn Upcaster>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.upcasters
                    .iter()
                    .map(|u| format!("{}@v{}", u.event_type(), u.source_version())),
            )
            .finish()
    }
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, upcaster: impl Upcaster + 'static) -> Self {
        self.upcasters.push(Box::new(upcaster));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.upcasters.is_empty()
    }

    /// Applies every matching upcaster in turn; returns the final version and payload.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: i32,
        mut payload: Value,
    ) -> Result<(i32, Value), String> {
        // Bounded: each step raises the version, and there are finitely many upcasters.
        while let Some(u) = self
            .upcasters
            .iter()
            .find(|u| u.event_type() == event_type && u.source_version() == version)
        {
            payload = u.upcast(payload)?;
            version += 1;
        }
        Ok((version, payload))
    }
}
