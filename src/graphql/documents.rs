//! Remembers the queries clients send again and again.
//!
//! A web app sends the same few operations with different variables, and
//! parsing and validating a query costs more than running many of them.
//! Parsed documents are kept by their text; a document that passed
//! validation once is not validated again (validation depends only on the
//! text and the schema: variable values are checked as they are used).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::ValidationResult;
use async_graphql::parser::types::ExecutableDocument;

/// Longer queries are parsed every time; they are not the hot ones.
const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct queries kept; when full the cache starts over.
const MAX_DOCUMENTS: usize = 512;

#[derive(Clone)]
struct Known {
    document: ExecutableDocument,
    validated: Option<ValidationResult>,
}

#[derive(Default)]
pub struct DocumentCache {
    known: Mutex<HashMap<Arc<str>, Known>>,
}

impl DocumentCache {
    pub fn cacheable(query: &str) -> bool {
        query.len() <= MAX_CACHED_QUERY_BYTES
    }

    pub fn document(&self, query: &str) -> Option<ExecutableDocument> {
        let known = self.known.lock().ok()?;
        known.get(query).map(|entry| entry.document.clone())
    }

    pub fn remember(&self, query: &str, document: &ExecutableDocument) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= MAX_DOCUMENTS {
                known.clear();
            }
            known.insert(
                Arc::from(query),
                Known {
                    document: document.clone(),
                    validated: None,
                },
            );
        }
    }

    pub fn validation(&self, query: &str) -> Option<ValidationResult> {
        self.known.lock().ok()?.get(query)?.validated
    }

    pub fn remember_validation(&self, query: &str, result: ValidationResult) {
        if let Ok(mut known) = self.known.lock()
            && let Some(entry) = known.get_mut(query)
        {
            entry.validated = Some(result);
        }
    }
}
