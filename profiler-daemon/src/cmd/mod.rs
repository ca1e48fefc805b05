pub mod agent;
pub mod record;
pub mod targets;
