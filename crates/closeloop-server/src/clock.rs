//! `closeloop.v1.ClockService`, served by every process: the time the
//! install runs on, and moving a simulated clock.

use closeloop_domain::Timestamp;
use closeloop_eventstore::{Clock, ClockError};
use closeloop_proto::convert;
use closeloop_proto::v1;
use closeloop_proto::v1::clock_service_server::ClockService;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct ClockGrpc(pub Clock);

fn state(clock: &Clock, now: std::time::SystemTime) -> v1::ClockState {
    v1::ClockState {
        now: Some(convert::timestamp(Timestamp::from_system_time(now))),
        kind: clock.kind().to_string(),
    }
}

fn status(e: ClockError) -> Status {
    match e {
        ClockError::NotSimulated | ClockError::Backwards { .. } => {
            Status::failed_precondition(e.to_string())
        }
        ClockError::Unavailable(_) => Status::unavailable(e.to_string()),
    }
}

#[tonic::async_trait]
impl ClockService for ClockGrpc {
    async fn get_clock(
        &self,
        _req: Request<v1::GetClockRequest>,
    ) -> Result<Response<v1::ClockState>, Status> {
        Ok(Response::new(state(&self.0, self.0.now())))
    }

    async fn set_clock(
        &self,
        req: Request<v1::SetClockRequest>,
    ) -> Result<Response<v1::ClockState>, Status> {
        let Some(to) = req.into_inner().to else {
            return Err(closeloop_proto::status::invalid_argument(vec![
                closeloop_domain::FieldViolation::new("to", "is required"),
            ]));
        };
        let to = convert::from_timestamp(&to).to_system_time();
        let now = self.0.set(to).await.map_err(status)?;
        tracing::warn!(now = %humantime::format_rfc3339_micros(now), "simulated clock set");
        Ok(Response::new(state(&self.0, now)))
    }

    async fn advance_clock(
        &self,
        req: Request<v1::AdvanceClockRequest>,
    ) -> Result<Response<v1::ClockState>, Status> {
        let secs = req.into_inner().seconds;
        let now = self
            .0
            .advance(std::time::Duration::from_secs(secs))
            .await
            .map_err(status)?;
        tracing::warn!(by_secs = secs, now = %humantime::format_rfc3339_micros(now), "simulated clock advanced");
        Ok(Response::new(state(&self.0, now)))
    }
}
