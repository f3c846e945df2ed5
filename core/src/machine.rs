//! The [`UploadMachine`] trait every protocol machine implements; adapters are generic
//! over it.

use crate::error::Misuse;
use crate::output::{Output, RequestId, TransportFailure};
use crate::secret::AccessToken;
use bytes::Bytes;
use std::time::{Instant, SystemTime};

/// A sans-IO upload: requests out, responses in, time passed explicitly.
///
/// # Contract
/// - After creating the machine and after every `handle_*`, `provide_data`,
///   `set_access_token`, `cancel` or protocol command, the adapter MUST call
///   [`poll_output`](Self::poll_output) until it returns [`Output::Wait`] or
///   [`Output::Finished`]. Polling again is harmless.
/// - `now` MUST come from one monotonic clock; a `now` earlier than one already seen is
///   treated as the latest one seen.
/// - Each [`Output::Send`] MUST eventually be answered with exactly one
///   [`handle_response`](Self::handle_response) or
///   [`handle_failure`](Self::handle_failure) carrying its id (an answer for a request the
///   machine stopped waiting for is dropped with an `Event::StaleResponse`).
/// - Each [`Output::NeedData`] MUST be answered with [`provide_data`](Self::provide_data)
///   for exactly that range before anything else makes progress.
/// - [`Output::NeedData`] may come while requests are in flight (read-ahead: a machine
///   asks for the chunk or fragment it will send next while the current one travels,
///   see [`UploadOptions::read_ahead`](crate::dropbox::UploadOptions::read_ahead) and
///   [`OneDriveConfig::read_ahead`](crate::onedrive::OneDriveConfig::read_ahead)). The rule
///   above still holds: provide the data before handing in their responses or failures
///   (an adapter that performs requests elsewhere queues their outcomes meanwhile).
///   Reading and hashing then overlap the transfer, which is what read-ahead is for.
/// - After `Wait(Some(t))`, call [`handle_timeout`](Self::handle_timeout) at or after `t`
///   (early calls do nothing). After `Wait(None)`, only a response, a failure or a caller
///   command makes progress.
pub trait UploadMachine {
    /// What a successful upload yields.
    type Completed;
    /// The resume snapshot type.
    type Checkpoint;

    /// Returns the next thing to do. New output appears after any input.
    fn poll_output(&mut self, now: Instant) -> Output<Self::Completed, Self::Checkpoint>;

    /// Handles the response to request `id`.
    ///
    /// # Errors
    /// [`Misuse::UnknownRequest`] when `id` was never issued.
    fn handle_response(
        &mut self,
        now: Instant,
        id: RequestId,
        response: http::Response<Bytes>,
    ) -> Result<(), Misuse>;

    /// Handles a transport failure of request `id` (instead of a response).
    ///
    /// # Errors
    /// [`Misuse::UnknownRequest`] when `id` was never issued.
    fn handle_failure(
        &mut self,
        now: Instant,
        id: RequestId,
        failure: TransportFailure,
    ) -> Result<(), Misuse>;

    /// Hands over the source bytes asked for by [`Output::NeedData`].
    ///
    /// # Errors
    /// [`Misuse::UnexpectedData`] / [`Misuse::WrongData`] when the range differs from
    /// the one asked for.
    fn provide_data(&mut self, offset: u64, data: Bytes) -> Result<(), Misuse>;

    /// Lets time pass. Early or repeated calls do nothing.
    fn handle_timeout(&mut self, now: Instant);

    /// Pairs the monotonic clock with the wall clock, used to interpret server times
    /// (session expiry, `Retry-After` dates). Adapters SHOULD call it before the first
    /// poll and before each `handle_response`. Machines that need no wall clock ignore it.
    fn handle_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        let _ = (now, wall);
    }

    /// Supplies a (new) access token, typically after `Event::TokenNeeded`.
    fn set_access_token(&mut self, token: AccessToken);

    /// Cancels the upload: the machine deletes its server session (if any) and finishes
    /// with `UploadError::Cancelled`. In-flight requests become stale.
    fn cancel(&mut self, now: Instant);

    /// True once the machine has a final result.
    fn is_finished(&self) -> bool;
}
