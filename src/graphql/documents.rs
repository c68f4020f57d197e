//! Remembers the queries clients send again and again.
//!
//! A web app sends the same few operations with different variables, and
//! parsing and validating a query costs more than running many of them.
//! Parsed documents are kept by their text, and a document that passed
//! validation once skips the rules the next time. Validation also looks at
//! variable values; skipping it moves a bad value's INVALID_INPUT from before
//! execution to the field that uses it. That is the same answer, except for
//! a mutation with several root fields, where the earlier fields would run:
//! such documents are validated every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::ValidationResult;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};

/// Longer queries are parsed every time; they are not the hot ones.
const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct queries kept; when full the cache starts over.
const MAX_DOCUMENTS: usize = 512;

#[derive(Clone)]
struct Known {
    document: ExecutableDocument,
    validated: Option<ValidationResult>,
    /// False for a mutation with several root fields (see above).
    may_skip_validation: bool,
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
                    may_skip_validation: !runs_several_mutations(document),
                },
            );
        }
    }

    pub fn validation(&self, query: &str) -> Option<ValidationResult> {
        let known = self.known.lock().ok()?;
        let entry = known.get(query)?;
        entry.validated.filter(|_| entry.may_skip_validation)
    }

    pub fn remember_validation(&self, query: &str, result: ValidationResult) {
        if let Ok(mut known) = self.known.lock()
            && let Some(entry) = known.get_mut(query)
        {
            entry.validated = Some(result);
        }
    }
}

/// A mutation whose root is anything but one plain field (several fields,
/// or fragments that may hold several).
fn runs_several_mutations(document: &ExecutableDocument) -> bool {
    document.operations.iter().any(|(_, operation)| {
        let roots = &operation.node.selection_set.node.items;
        operation.node.ty == OperationType::Mutation
            && !matches!(roots.as_slice(), [root] if matches!(root.node, Selection::Field(_)))
    })
}
