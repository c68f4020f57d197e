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

use std::sync::Arc;

use async_graphql::ValidationResult;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use quick_cache::sync::Cache;

/// Longer queries are parsed every time; they are not the hot ones.
const MAX_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct queries kept. The cache evicts the queries seen least, so a
/// client sending endless distinct texts cannot push out the hot ones.
const MAX_DOCUMENTS: usize = 512;

#[derive(Clone)]
struct Known {
    document: ExecutableDocument,
    validated: Option<ValidationResult>,
    /// False for a mutation with several root fields (see above).
    may_skip_validation: bool,
}

pub struct DocumentCache {
    known: Cache<Arc<str>, Known>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            known: Cache::new(MAX_DOCUMENTS),
        }
    }
}

impl DocumentCache {
    pub fn cacheable(query: &str) -> bool {
        query.len() <= MAX_CACHED_QUERY_BYTES
    }

    pub fn document(&self, query: &str) -> Option<ExecutableDocument> {
        self.known.get(query).map(|entry| entry.document)
    }

    pub fn remember(&self, query: &str, document: &ExecutableDocument) {
        self.known.insert(
            Arc::from(query),
            Known {
                document: document.clone(),
                validated: None,
                may_skip_validation: !runs_several_mutations(document),
            },
        );
    }

    pub fn validation(&self, query: &str) -> Option<ValidationResult> {
        let entry = self.known.get(query)?;
        entry.validated.filter(|_| entry.may_skip_validation)
    }

    pub fn remember_validation(&self, query: &str, result: ValidationResult) {
        if let Some(mut entry) = self.known.get(query) {
            entry.validated = Some(result);
            self.known.insert(Arc::from(query), entry);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(query: &str) -> Option<ExecutableDocument> {
        async_graphql::parser::parse_query(query).ok()
    }

    #[test]
    fn a_flood_of_distinct_queries_does_not_push_out_the_hot_one() {
        let cache = DocumentCache::default();
        let hot = "{ queueStatus { status position } }";
        let Some(document) = parsed(hot) else {
            panic!("the hot query parses");
        };
        cache.remember(hot, &document);
        for n in 0..5 * MAX_DOCUMENTS {
            let text = format!("{{ a{n}: __typename }}");
            if let Some(flood) = parsed(&text) {
                cache.remember(&text, &flood);
            }
            if n % 8 == 0 {
                assert!(cache.document(hot).is_some(), "lost after {n} others");
            }
        }
        assert!(cache.document(hot).is_some());
        assert!(cache.known.len() <= MAX_DOCUMENTS);
    }
}
