//! The cost of a query's introspection part.
//!
//! async-graphql reckons every introspection field at 1, lists included, so
//! the schema's cost limit cannot see `types { fields { type { ofType {
//! fields { ... } } } } }` multiply as it runs. Here the introspection
//! lists count their items like the schema's own lists do, so that the
//! standard queries of graphql-js and graphql-core (three lists deep) pass
//! and a query that nests them deeper is refused by the same budget.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// The lists of the introspection types (`__Schema`, `__Type`, `__Field`,
/// `__Directive`), each reckoned to hold this many items.
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];
const ITEMS_PER_LIST: usize = 10;
/// No cost is reckoned above this; it only keeps the sums from overflowing.
const CEILING: usize = 1 << 40;

/// The cost of the costliest operation's introspection fields.
pub fn cost(document: &ExecutableDocument) -> usize {
    let mut walk = Walk {
        document,
        fragments: HashMap::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, operation)| walk.selections(&operation.node.selection_set.node, false))
        .max()
        .unwrap_or(0)
}

struct Walk<'d> {
    document: &'d ExecutableDocument,
    /// Each fragment's cost, once known (`None` while it is being reckoned:
    /// a fragment that spreads itself costs nothing here, and validation
    /// refuses it anyway).
    fragments: HashMap<(&'d str, bool), Option<usize>>,
}

impl<'d> Walk<'d> {
    /// `inside`: whether these selections are under `__schema` or `__type`.
    fn selections(&mut self, set: &'d SelectionSet, inside: bool) -> usize {
        set.items
            .iter()
            .map(|selection| match &selection.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let inside = inside || name == "__schema" || name == "__type";
                    let each = 1 + self.selections(&field.node.selection_set.node, inside);
                    if inside && INTROSPECTION_LISTS.contains(&name) {
                        each.saturating_mul(ITEMS_PER_LIST)
                    } else {
                        each
                    }
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), inside)
                }
                Selection::InlineFragment(inline) => {
                    self.selections(&inline.node.selection_set.node, inside)
                }
            })
            .fold(0, |total, cost| total.saturating_add(cost).min(CEILING))
    }

    /// Reckoned once per fragment (and place), so that fragments spreading
    /// others several times cannot make this walk itself expensive.
    fn fragment(&mut self, name: &'d str, inside: bool) -> usize {
        if let Some(known) = self.fragments.get(&(name, inside)) {
            return known.unwrap_or(0);
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return 0; // validation reports the unknown fragment
        };
        self.fragments.insert((name, inside), None);
        let cost = self.selections(&fragment.node.selection_set.node, inside);
        self.fragments.insert((name, inside), Some(cost));
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost_of(query: &str) -> usize {
        match async_graphql::parser::parse_query(query) {
            Ok(document) => cost(&document),
            Err(error) => panic!("{query}: {error}"),
        }
    }

    #[test]
    fn each_nested_introspection_list_multiplies_and_nothing_else_does() {
        // Outside introspection a field counts 1 and nothing multiplies.
        assert_eq!(cost_of("{ __typename concerts { id } }"), 3);
        assert_eq!(cost_of("{ __schema { types { name } } }"), 1 + 10 * 2);
        let three = "{ __schema { types { fields { args { name } } } } }";
        let four = "{ __schema { types { fields { type { fields { args { name } } } } } } }";
        assert!(cost_of(four) > 10 * cost_of(three) / 2);
    }

    #[test]
    fn fragments_are_reckoned_once_and_cycles_cost_nothing() {
        let spread_twice = "{ __schema { ...A } } \
            fragment A on __Schema { types { ...B ...B } } \
            fragment B on __Type { fields { name } }";
        assert_eq!(cost_of(spread_twice), 1 + 10 * (1 + 2 * (10 * 2)));
        let cycle = "{ __schema { ...A } } fragment A on __Schema { ...A types { name } }";
        assert_eq!(cost_of(cycle), 1 + 10 * 2);
    }
}
