//! The reservation mutations as executor commands. Each claims its key
//! with the wallet's lock (the lean shape's first statement).

use uuid::Uuid;

use super::{CaptureReservation, CreateReservation, Held, Reservation, ReservationError};
use crate::{config::ReservationConfig, executor::command, tenants::Tenant};

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

command!(Hold: "reservation.create" => lean Held, ReservationError,
    |c, unit, key| super::create(unit, key, c.tenant, c.wallet_id, c.input, &c.config));
command!(Capture: "reservation.capture", status 200 => lean Reservation, ReservationError,
    |c, unit, key| super::capture(unit, key, c.tenant, c.reservation_id, c.input));
command!(Release: "reservation.release", status 200 => lean Reservation, ReservationError,
    |c, unit, key| super::release(unit, key, c.tenant, c.reservation_id));
