//! The reservation mutations as executor commands.

use uuid::Uuid;

use super::{CaptureReservation, CreateReservation, Held, Reservation, ReservationError};
use crate::{
    config::ReservationConfig,
    executor::{Command, Run, Unit},
    tenants::Tenant,
};

pub struct Hold(pub Tenant, pub Uuid, pub CreateReservation, pub ReservationConfig);
pub struct Capture(pub Tenant, pub Uuid, pub CaptureReservation);
pub struct Release(pub Tenant, pub Uuid);

impl Command for Hold {
    const ACTION: &'static str = "reservation.create";
    type Output = Held;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Held>, ReservationError> {
        let key = unit.key();
        super::create(unit.conn(), self.0, self.1, self.2, &self.3, key).await
    }
}

impl Command for Capture {
    const ACTION: &'static str = "reservation.capture";
    const STATUS: u16 = 200;
    type Output = Reservation;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Reservation>, ReservationError> {
        let (request_id, key) = (unit.request_id(), unit.key());
        super::capture(unit.conn(), self.0, self.1, self.2, request_id, key).await
    }
}

impl Command for Release {
    const ACTION: &'static str = "reservation.release";
    const STATUS: u16 = 200;
    type Output = Reservation;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<Reservation>, ReservationError> {
        let (request_id, key) = (unit.request_id(), unit.key());
        super::release(unit.conn(), self.0, self.1, request_id, key).await
    }
}
