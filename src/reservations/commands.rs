//! The reservation mutations as executor commands. Each claims its key
//! with the wallet's lock (the lean shape's first statement).

use uuid::Uuid;

use super::{CaptureReservation, CreateReservation, Held, Reservation, ReservationError};
use crate::{
    config::ReservationConfig,
    executor::{Command, Ran, Unclaimed, Unit},
    tenants::Tenant,
};

pub struct Hold {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub input: CreateReservation,
    pub config: ReservationConfig,
}

pub struct Capture {
    pub tenant: Tenant,
    pub reservation_id: Uuid,
    pub input: CaptureReservation,
}

pub struct Release {
    pub tenant: Tenant,
    pub reservation_id: Uuid,
}

impl Command for Hold {
    const ACTION: &'static str = "reservation.create";
    type Key = Unclaimed;
    type Output = Held;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<Held>, ReservationError> {
        super::create(unit, key, self.tenant, self.wallet_id, self.input, &self.config).await
    }
}

impl Command for Capture {
    const ACTION: &'static str = "reservation.capture";
    const STATUS: u16 = 200;
    type Key = Unclaimed;
    type Output = Reservation;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<Reservation>, ReservationError> {
        super::capture(unit, key, self.tenant, self.reservation_id, self.input).await
    }
}

impl Command for Release {
    const ACTION: &'static str = "reservation.release";
    const STATUS: u16 = 200;
    type Key = Unclaimed;
    type Output = Reservation;
    type Error = ReservationError;
    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<Reservation>, ReservationError> {
        super::release(unit, key, self.tenant, self.reservation_id).await
    }
}
