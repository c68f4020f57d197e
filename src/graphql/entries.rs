//! How many entries (`limits::ENTRY_FIELDS`) an operation calls: 200
//! aliased `registerUser` fields in one request are 200 entries, however
//! they are spread over fragments.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};

use crate::limits::ENTRY_FIELDS;

/// The entry fields at the root of the operation that runs: the one named,
/// or the only one. Unknown names and documents with several unnamed
/// operations count 0: the schema refuses them before anything runs.
pub fn entries_in(document: &ExecutableDocument, operation_name: Option<&str>) -> u32 {
    let operation = document
        .operations
        .iter()
        .find(|(name, _)| match operation_name {
            Some(wanted) => name.is_some_and(|name| name.as_str() == wanted),
            None => true,
        });
    let Some((_, operation)) = operation else {
        return 0;
    };
    if operation.node.ty != OperationType::Mutation {
        return 0;
    }
    let mut counter = Counter {
        document,
        fragments: HashMap::new(),
    };
    counter.selections(&operation.node.selection_set.node)
}

struct Counter<'d> {
    document: &'d ExecutableDocument,
    /// Each fragment's count once known; `None` while it is being counted,
    /// so that a fragment spreading itself (which validation refuses
    /// later) counts nothing rather than recursing.
    fragments: HashMap<&'d str, Option<u32>>,
}

impl<'d> Counter<'d> {
    fn selections(&mut self, set: &'d SelectionSet) -> u32 {
        set.items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    u32::from(ENTRY_FIELDS.contains(&field.node.name.node.as_str()))
                }
                Selection::InlineFragment(inline) => {
                    self.selections(&inline.node.selection_set.node)
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())
                }
            })
            .fold(0, u32::saturating_add)
    }

    /// Counted once per fragment, however often it is spread: a chain of
    /// fragments each spreading the next twice stays linear to count.
    fn fragment(&mut self, name: &'d str) -> u32 {
        if let Some(known) = self.fragments.get(name) {
            return known.unwrap_or(0);
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return 0; // validation reports the unknown fragment
        };
        self.fragments.insert(name, None);
        let count = self.selections(&fragment.node.selection_set.node);
        self.fragments.insert(name, Some(count));
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str, operation: Option<&str>) -> u32 {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        entries_in(&document, operation)
    }

    #[test]
    fn aliases_count_one_each() {
        let aliased = (0..200)
            .map(|i| format!("u{i}: registerUser(name: \"n\") {{ id }}"))
            .collect::<String>();
        assert_eq!(count(&format!("mutation {{ {aliased} }}"), None), 200);
    }

    #[test]
    fn fragments_multiply_as_they_spread() {
        let query = "mutation { ...A ...A }
            fragment A on Mutation { a: issueToken(userId: \"1\") { token } ...B ...B }
            fragment B on Mutation { b: chargeBalance(userId: \"1\", amount: \"1\", idempotencyKey: \"k\") { balance } }";
        // A is one issueToken and two B: 3; spread twice: 6.
        assert_eq!(count(query, None), 6);
    }

    #[test]
    fn a_fragment_spreading_itself_counts_once() {
        let query =
            "mutation { ...A } fragment A on Mutation { registerUser(name: \"n\") { id } ...A }";
        assert_eq!(count(query, None), 1);
    }

    #[test]
    fn only_the_operation_that_runs_counts() {
        let query = "query Q { me { id } } mutation M { a: registerUser(name: \"x\") { id } b: registerUser(name: \"y\") { id } }";
        assert_eq!(count(query, Some("M")), 2);
        assert_eq!(count(query, Some("Q")), 0);
        assert_eq!(count("{ concerts { id } }", None), 0);
        assert_eq!(
            count("mutation { holdSeat(seatId: \"1\") { id } }", None),
            0
        );
    }
}
