//! kirc-tui: the K-IRC terminal front end.
//!
//! The TUI is state / update / render: [`state::State`] holds everything on
//! screen, [`update::update`] applies one message (a key, a daemon event, a
//! connection change) to it, and [`ui::render`] draws it without any I/O. Only
//! [`connection`] talks to the daemon, and only over its socket.

pub mod commands;
pub mod connection;
pub mod input;
pub mod keys;
pub mod layout;
pub mod links;
pub mod settings;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod update;
