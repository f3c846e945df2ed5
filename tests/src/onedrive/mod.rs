//! The OneDrive model. (Skeleton: every request is answered 501 until the model lands.)

use crate::ingest::Received;
use crate::{Config, Cx, FileRecord, ServiceModel, Started, wire};
use bytes::Bytes;
use http::{Response, StatusCode, request};

/// The OneDrive service model.
#[derive(Debug)]
pub struct OneDrive {}

/// Continuation of a OneDrive request whose body is being read.
#[derive(Debug)]
pub struct Ticket {}

impl OneDrive {
    /// Creates an empty model.
    pub fn new(_config: &Config) -> Self {
        Self {}
    }
}

impl ServiceModel for OneDrive {
    type Ticket = Ticket;

    fn begin(&mut self, _cx: &mut Cx<'_>, _head: &request::Parts) -> Started<Ticket> {
        Started::Respond(wire::text(StatusCode::NOT_IMPLEMENTED, "not implemented"))
    }

    fn complete(&mut self, _cx: &mut Cx<'_>, _t: Ticket, _body: Received) -> Response<Bytes> {
        wire::text(StatusCode::NOT_IMPLEMENTED, "not implemented")
    }

    fn abort(&mut self, _cx: &mut Cx<'_>, _t: Ticket, _body: Received, _keep_prefix: bool) {}

    fn overflow(&mut self, _cx: &mut Cx<'_>, _t: Ticket, _limit: u64) -> Response<Bytes> {
        wire::text(StatusCode::PAYLOAD_TOO_LARGE, "too large")
    }

    fn files(&self) -> Vec<FileRecord> {
        Vec::new()
    }
}
