pub mod agent;
pub mod record;
pub mod run;
pub mod server;
pub mod targets;
