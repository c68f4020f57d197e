// @generated automatically by Diesel CLI.

diesel::table! {
    balance_entries (id) {
        id -> Unsigned<Bigint>,
        #[max_length = 16]
        user_id -> Binary,
        #[max_length = 8]
        kind -> Varchar,
        amount -> Decimal,
        balance_after -> Decimal,
        #[max_length = 16]
        payment_id -> Nullable<Binary>,
        at -> Datetime,
        #[max_length = 16]
        reservation_id -> Nullable<Binary>,
    }
}

diesel::table! {
    catalogue_seeds (name) {
        #[max_length = 32]
        name -> Varchar,
        seeded_at -> Datetime,
    }
}

diesel::table! {
    concert_dates (id) {
        id -> Unsigned<Bigint>,
        concert_id -> Unsigned<Bigint>,
        starts_at -> Datetime,
        sales_open_at -> Datetime,
        cancelled_at -> Nullable<Datetime>,
    }
}

diesel::table! {
    concerts (id) {
        id -> Unsigned<Bigint>,
        #[max_length = 200]
        name -> Varchar,
        #[max_length = 200]
        venue -> Varchar,
        created_at -> Datetime,
    }
}

diesel::table! {
    idempotency_keys (user_id, scope, idempotency_key) {
        #[max_length = 16]
        user_id -> Binary,
        #[max_length = 8]
        scope -> Varchar,
        #[max_length = 400]
        idempotency_key -> Varbinary,
        #[max_length = 16]
        payment_id -> Nullable<Binary>,
        created_at -> Datetime,
    }
}

diesel::table! {
    payments (id) {
        #[max_length = 16]
        id -> Binary,
        #[max_length = 16]
        user_id -> Binary,
        amount -> Decimal,
        paid_at -> Datetime,
    }
}

diesel::table! {
    queue_state (id) {
        id -> Unsigned<Tinyint>,
        last_issued_seq -> Unsigned<Bigint>,
        admitted_through_seq -> Unsigned<Bigint>,
        max_active_tokens -> Nullable<Unsigned<Integer>>,
        admit_interval_ms -> Nullable<Unsigned<Integer>>,
        admission_paused -> Bool,
    }
}

diesel::table! {
    queue_tokens (seq) {
        seq -> Unsigned<Bigint>,
        #[max_length = 16]
        user_id -> Binary,
        #[max_length = 16]
        nonce -> Binary,
        #[max_length = 7]
        status -> Varchar,
        issued_at -> Datetime,
        admitted_at -> Nullable<Datetime>,
        expires_at -> Nullable<Datetime>,
        live_holds -> Unsigned<Integer>,
        #[max_length = 16]
        live_user_id -> Nullable<Binary>,
    }
}

diesel::table! {
    reservations (id) {
        #[max_length = 16]
        id -> Binary,
        #[max_length = 16]
        user_id -> Binary,
        seat_id -> Unsigned<Bigint>,
        token_seq -> Unsigned<Bigint>,
        #[max_length = 8]
        status -> Varchar,
        price -> Decimal,
        created_at -> Datetime,
        held_until -> Datetime,
        #[max_length = 16]
        payment_id -> Nullable<Binary>,
        paid_seat_id -> Nullable<Unsigned<Bigint>>,
    }
}

diesel::table! {
    seats (id) {
        id -> Unsigned<Bigint>,
        concert_date_id -> Unsigned<Bigint>,
        number -> Integer,
        price -> Decimal,
        #[max_length = 9]
        status -> Varchar,
        #[max_length = 16]
        held_by_reservation_id -> Nullable<Binary>,
        held_until -> Nullable<Datetime>,
    }
}

diesel::table! {
    server_secrets (name) {
        #[max_length = 32]
        name -> Varchar,
        #[max_length = 64]
        secret -> Varbinary,
        created_at -> Datetime,
    }
}

diesel::table! {
    users (id) {
        #[max_length = 16]
        id -> Binary,
        #[max_length = 50]
        name -> Varchar,
        balance -> Decimal,
        created_at -> Datetime,
        #[max_length = 255]
        subject -> Nullable<Varchar>,
    }
}

diesel::joinable!(balance_entries -> payments (payment_id));
diesel::joinable!(balance_entries -> users (user_id));
diesel::joinable!(concert_dates -> concerts (concert_id));
diesel::joinable!(idempotency_keys -> payments (payment_id));
diesel::joinable!(idempotency_keys -> users (user_id));
diesel::joinable!(payments -> users (user_id));
diesel::joinable!(queue_tokens -> users (user_id));
diesel::joinable!(reservations -> payments (payment_id));
diesel::joinable!(reservations -> queue_tokens (token_seq));
diesel::joinable!(reservations -> seats (seat_id));
diesel::joinable!(reservations -> users (user_id));
diesel::joinable!(seats -> concert_dates (concert_date_id));

diesel::allow_tables_to_appear_in_same_query!(
    balance_entries,
    catalogue_seeds,
    concert_dates,
    concerts,
    idempotency_keys,
    payments,
    queue_state,
    queue_tokens,
    reservations,
    seats,
    server_secrets,
    users,
);
