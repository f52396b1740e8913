//! The one-shot commands of the `kircd` binary, beside `kircd run`:
//! `init`, `doctor`, `status`, and `service` (the systemd user unit).

pub mod doctor;
pub mod init;
pub mod status;
pub mod unit;

/// Exit code for an invalid configuration or setup (sysexits' EX_CONFIG), so
/// that a service manager can tell it from a crash and not restart in a loop.
pub const EXIT_CONFIG: u8 = 78;
/// Exit code when another kircd already serves the socket (EX_TEMPFAIL).
pub const EXIT_ALREADY_RUNNING: u8 = 75;
/// Exit code of `kircd status` when no daemon answers (as systemctl's).
pub const EXIT_NOT_RUNNING: u8 = 3;
