//! The one GraphQL schema: roots merged from the domains' parts, the
//! limits, and the extension that gives every error its contract code.

pub mod context;
mod documents;
mod entries;
mod extension;
pub mod guard;
mod introspection;
mod loading;
pub mod nesting;
pub mod paging;
pub mod scalars;

use std::sync::Arc;

use async_graphql::{
    Data, Executor, MergedObject, MergedSubscription, Request, Response, SDLExportOptions, Schema,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::AppState;
use crate::booking::graphql::{BookingMutation, BookingQuery};
use crate::catalogue::graphql::{CatalogueMutation, CatalogueQuery};
use crate::queue::graphql::{QueueMutation, QueueQuery};
use crate::queue::subscription::QueueSubscription;
use crate::wallet::graphql::{WalletMutation, WalletQuery};

pub use extension::{MAX_QUERY_BYTES, OverWebsocket};

#[derive(MergedObject, Default)]
pub struct Query(WalletQuery, QueueQuery, CatalogueQuery, BookingQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    WalletMutation,
    QueueMutation,
    BookingMutation,
    CatalogueMutation,
);

#[derive(MergedSubscription, Default)]
pub struct Subscription(QueueSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Deep enough for the introspection query of graphql-js and graphql-core
/// (`__schema` -> types -> fields -> args -> type, then ten `ofType`). What
/// grows with depth is bounded by the cost, which counts lists (the
/// introspection lists included) as many times as they are reckoned to hold.
const MAX_DEPTH: usize = 20;
/// The estimated cost of one query: a field counts 1, and a list counts as
/// many times its items' cost as it is reckoned to hold, so that nesting
/// lists (seats -> concertDate -> seats -> ...) multiplies as the rows do.
/// The whole catalogue with every field, back-references included, costs
/// about 50,000; one more turn of seats -> concertDate -> seats, 50 times that.
pub(crate) const MAX_COMPLEXITY: usize = 100_000;
/// Seats a date has at most.
const SEATS_COST: usize = 50;
/// Items reckoned for any other list (concerts, dates); a page of a
/// user's history counts its `first` (see `paging::cost`).
const LIST_COST: usize = 10;
/// A top-level lookup that takes a database round trip of its own
/// (`user(id)`): at most 250 of them in one query.
const LOOKUP_COST: usize = 400;
/// No one field's cost is reckoned above this. async-graphql totals the
/// cost before it checks the depth, so deep nesting of lists would
/// otherwise overflow (a panic in debug builds, a wrap to a small cost in
/// release); 2^40 leaves room for any number of siblings a 16 KiB query holds.
const COST_CEILING: usize = 1 << 40;

/// The cost of a list reckoned to hold `items`, each costing `each`.
fn list_cost(items: usize, each: usize) -> usize {
    each.saturating_mul(items).min(COST_CEILING)
}

/// The cost of a date's seats, each costing `each`.
pub fn seats_cost(each: usize) -> usize {
    list_cost(SEATS_COST, each)
}

/// The cost of any other list (concerts, dates).
pub fn other_list_cost(each: usize) -> usize {
    list_cost(LIST_COST, each)
}

/// The cost of a lookup with its own round trip, whose result costs `each`.
pub fn lookup_cost(each: usize) -> usize {
    each.saturating_add(LOOKUP_COST).min(COST_CEILING)
}
const MAX_RECURSIVE_DEPTH: usize = 32;
const MAX_DIRECTIVES: usize = 8;

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(MAX_RECURSIVE_DEPTH)
    .limit_directives(MAX_DIRECTIVES)
    .extension(extension::RequestSetupFactory::default())
}

pub fn build_schema(state: AppState) -> AppSchema {
    builder().data(state).finish()
}

/// The SDL that `schema.graphql` holds, sorted so that it diffs well.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// The schema as the endpoints run it. async-graphql reports a few errors
/// outside every extension hook (an `operationName` that names no operation
/// of the document, or none given for a document of several): here those
/// get their contract code too, over HTTP and the websocket alike.
#[derive(Clone)]
pub struct CodedSchema(pub AppSchema);

impl Executor for CodedSchema {
    async fn execute(&self, request: Request) -> Response {
        extension::classify_response(self.0.execute(request).await)
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        Executor::execute_stream(&self.0, request, session_data)
            .map(extension::classify_response)
            .boxed()
    }
}
