//! The notification service: owners and stakeholders told about their
//! tickets, each notification exactly once in effect.
//!
//! * Who hears what is the domain's pure decision
//!   ([`closeloop_domain::notification::notices`]); each notification's
//!   life (requested, attempted, delivered, gave up) is an aggregate of its
//!   own, with a deterministic id (causing event, recipient, channel).
//! * [`role`]: the `notification` role. A durable consumer of ticket events
//!   (`notification`) requests the notifications each event causes; the
//!   [`view`] projects them into `notifications`, which is also the outbox;
//!   a delivery worker claims due rows, renders them ([`templates`]) and
//!   sends them ([`email`]), recording every attempt as an event.
//! * Registered webhook endpoints ([`endpoints`], an aggregate each) get a
//!   signed delivery of every ticket event they asked for ([`webhook`]),
//!   through the same outbox, over the guarded HTTP client ([`outbound`]).
//! * [`grpc::NotificationGrpc`] serves `closeloop.v1.NotificationService`:
//!   list notifications, redrive one that gave up, manage endpoints.
//! * A redelivered or replayed ticket event requests the same notifications
//!   again, which writes nothing; a crash between sending and recording
//!   sends again with the same `Message-ID`, so receivers can drop it.

pub mod chat;
pub mod email;
pub mod endpoints;
pub mod grpc;
pub mod outbound;
pub mod role;
pub mod templates;
pub mod view;
pub mod webhook;

/// The migrations of the tables this crate owns (versions 4000-4999).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
